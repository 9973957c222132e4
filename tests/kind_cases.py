"""Shared test material for the sub-pixel and resize kinds (issue 15): the fixed sweep, seeded weights
and inputs, and the reference's forward and gradients to compare every build against."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import upsample
from upsample.conv_specs import ResizeSpec, SubpixelSpec

Spec = SubpixelSpec | ResizeSpec

SWEEP: list[Spec] = [
    SubpixelSpec(2, 3, scale=2, kernel_size=3),
    SubpixelSpec(3, 2, scale=(2, 3), kernel_size=(2, 3), residual="projection"),
    SubpixelSpec(2, 2, scale=3, kernel_size=4, residual="nearest", use_bias=False),
    SubpixelSpec(3, 1, scale=(1, 2), kernel_size=1),
    SubpixelSpec(2, scale=1, kernel_size=(3, 2)),
    ResizeSpec(2, 3, scale=2, method="nearest", kernel_size=3),
    ResizeSpec(3, 2, scale=(2, 3), method="bilinear", kernel_size=(2, 3), residual="projection"),
    ResizeSpec(2, 2, scale=3, method="bilinear", kernel_size=4, residual="nearest", use_bias=False),
    ResizeSpec(2, 1, scale=(3, 1), method="nearest", kernel_size=1),
    ResizeSpec(3, 3, scale=1, method="bilinear", kernel_size=2),
    # every method and coordinate convention (ONNX Resize): torch's and JAX's own resize where they compute it,
    # gathers where no framework does
    ResizeSpec(2, 3, scale=(2, 3), method="cubic", kernel_size=3),
    ResizeSpec(2, 2, scale=3, method="cubic", kernel_size=2, cubic_a=-0.5, exclude_outside=True, residual="nearest"),
    ResizeSpec(3, 2, scale=(3, 2), method="cubic", kernel_size=1, coordinates="pytorch_half_pixel", cubic_a=-0.5),
    ResizeSpec(2, 3, scale=2, method="linear", kernel_size=3, coordinates="align_corners", residual="projection"),
    ResizeSpec(2, 2, scale=(2, 3), method="linear", kernel_size=2, coordinates="asymmetric"),
    ResizeSpec(
        3, 2, scale=(3, 2), method="nearest", kernel_size=3, coordinates="asymmetric", nearest_mode="round_prefer_floor"
    ),
    ResizeSpec(2, 2, scale=3, method="nearest", kernel_size=2, coordinates="align_corners", nearest_mode="ceil"),
    # non-integer factors (ONNX scales) and sizes (ONNX sizes): gathers in every build
    ResizeSpec(2, 3, scale=1.5, method="linear", kernel_size=3),
    ResizeSpec(
        2, 2, scale=(2.5, 1.25), method="nearest", kernel_size=2, coordinates="asymmetric", nearest_mode="floor"
    ),
    ResizeSpec(3, 2, size=(5, 3), method="cubic", kernel_size=3, coordinates="pytorch_half_pixel", cubic_a=-0.5),
    ResizeSpec(2, 2, size=(4, 7), method="linear", kernel_size=(1, 2), coordinates="align_corners"),
    # a resize alone (kernel_size=None: nn.Upsample, UpSampling2D, MONAI's nontrainable mode): no weights
    ResizeSpec(2, scale=2, method="linear", kernel_size=None),
    ResizeSpec(3, scale=(1.5, 3), method="cubic", kernel_size=None, coordinates="align_corners"),
    ResizeSpec(2, scale=(2, 3), kernel_size=None),
]
"""Scales 1..3 (non-square too), kernels 1..4 (even, non-square), every residual mode, every method, every
coordinate convention, the nearest modes that do not repeat pixels, non-integer factors and sizes (one of them
shrinking a 3x4 input along its width), and resizes alone."""

SIZES = [(1, 1), (3, 4)]
CASES = [(spec, size) for spec in SWEEP for size in SIZES]


def case_id(case: Any) -> str:
    if isinstance(case, tuple):
        return f"{case[0]}"
    return str(case)


def weights(spec: Spec, seed: int = 0) -> upsample.Weights:
    """Seeded canonical weights with a non-zero bias (init_weights starts biases at zero)."""
    drawn = upsample.init_weights(spec, seed=seed)
    bias = None
    if spec.use_bias:
        bias = np.random.default_rng(seed).normal(size=spec.weight_shapes()["bias"]).astype(np.float32)
    return upsample.Weights(drawn.kernel, bias, drawn.skip)


def inputs(spec: Spec, size: tuple[int, int], batch: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 NHWC input and a float32 NHWC output cotangent."""
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(batch, *size, spec.in_channels)).astype(np.float32)
    grad_y = rng.normal(size=(batch, *spec.output_size(size), spec.out_channels)).astype(np.float32)
    return x, grad_y


def expected(spec: Spec, w: upsample.Weights, x: np.ndarray, grad_y: np.ndarray) -> dict[str, Any]:
    """The reference's output and gradients, by name."""
    grad_x, grad_w = upsample.reference.vjp(spec, w, x, grad_y)
    return {
        "y": upsample.reference.forward(spec, w, x),
        "grad_x": grad_x,
        "grad_kernel": grad_w.kernel,
        "grad_bias": grad_w.bias,
        "grad_skip": grad_w.skip,
    }


@st.composite
def random_cases(draw: st.DrawFn) -> tuple[Spec, tuple[int, int], int]:
    """A spec of either kind, an input size and a seed (for the hypothesis tests)."""
    in_channels, out_channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pair = lambda top: st.tuples(st.integers(1, top), st.integers(1, top))  # noqa: E731
    residuals = [None, "projection", *(["nearest"] if in_channels == out_channels else [])]
    common = {
        "scale": draw(pair(3)),
        "kernel_size": draw(pair(4)),
        "residual": draw(st.sampled_from(residuals)),
        "use_bias": draw(st.booleans()),
    }
    spec: Spec
    if draw(st.booleans()):
        spec = SubpixelSpec(in_channels, out_channels, **common)
    else:
        spec = ResizeSpec(in_channels, out_channels, method=draw(st.sampled_from(["nearest", "bilinear"])), **common)
    return spec, draw(pair(4)), draw(st.integers(0, 2**16))
