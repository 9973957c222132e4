"""Mixed-precision material shared by tests/test_precision.py (torch, Flax) and tests/test_precision_keras.py:
the cases (one per code path and spec kind), their seeded data, the tolerance table (docs/training-at-scale.md
prints it as well; tests/test_precision.py checks that the two agree) and the comparison it is used with.

Tolerances are relative to the largest reference value: ``max|got - ref| <= tolerance * max|ref|``, where
``ref`` is the float64 NumPy reference (forward and VJP) from the same float32 weights and input. There are
two per framework and dtype: one for the output and the input gradient, one for the weight gradients
(kernel, bias, projection skip), which sum over every sample and pixel: in bfloat16, Flax and Keras on
JAX and TensorFlow sum the bias gradient in the low dtype (their own transposed convolution does), so
theirs is wider. Each is about twice the worst error measured over 20 seeds
per case (issue 19; docs/training-at-scale.md gives the figures, and how they were measured).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

import upsample
from upsample import reference

LOW_DTYPES = ("bfloat16", "float16")


class Tolerance(NamedTuple):
    """Relative tolerances for one framework and dtype."""

    values: float
    """the output and the input gradient"""
    weight_gradients: float
    """kernel, bias and projection-skip gradients"""


TOLERANCE: dict[tuple[str, str], Tolerance] = {
    ("torch", "bfloat16"): Tolerance(2e-2, 2e-2),
    ("torch", "float16"): Tolerance(2e-3, 2e-3),
    ("flax", "bfloat16"): Tolerance(2e-2, 1e-1),
    ("flax", "float16"): Tolerance(2e-3, 1e-2),
    ("keras/tensorflow", "bfloat16"): Tolerance(2e-2, 1e-1),
    ("keras/tensorflow", "float16"): Tolerance(3e-3, 6e-3),
    ("keras/jax", "bfloat16"): Tolerance(2e-2, 1e-1),
    ("keras/jax", "float16"): Tolerance(2e-3, 2e-3),
    ("keras/torch", "bfloat16"): Tolerance(2e-2, 2e-2),
    ("keras/torch", "float16"): Tolerance(2e-3, 2e-3),
}
"""(framework, dtype) -> tolerances relative to ``max|reference|`` (``flax`` covers linen and NNX)."""

CHANNELS = 8
BATCH = 4

CASES: dict[str, tuple[upsample.UpsampleSpec, tuple[int, int]]] = {
    # 1x1 input: the matmul fast path, with a projection skip
    "fast-path": (upsample.UpsampleSpec.for_size(CHANNELS, 4, out_channels=6, residual="projection"), (1, 1)),
    # 1x1 input with negative crops: the fast path's crop-and-pad branch (rows that get the bias alone)
    "fast-path-pad": (upsample.UpsampleSpec(CHANNELS, 8, kernel_size=3, stride=2, padding=((1, -1), (0, 2))), (1, 1)),
    # 4x4 -> 8x8 (k4 s2 p1): the framework's native transposed convolution
    "native": (upsample.UpsampleSpec.for_size(CHANNELS, 8, input_size=4), (4, 4)),
    # crops no framework's arguments express: full output, then slice and pad, then bias
    "slice-pad": (upsample.UpsampleSpec(CHANNELS, 8, kernel_size=3, stride=2, padding=((1, -1), (0, 2))), (3, 3)),
    # the identity skip, gathered by nearest index onto a native transposed convolution
    "residual": (
        upsample.UpsampleSpec(CHANNELS, CHANNELS, kernel_size=4, stride=2, padding=1, residual="nearest"),
        (3, 3),
    ),
    # sub-pixel convolution (conv + pixel shuffle) with a projection skip
    "subpixel": (upsample.SubpixelSpec(CHANNELS, 6, scale=2, residual="projection"), (3, 3)),
    # bilinear resize-convolution with the identity skip
    "resize-bilinear": (
        upsample.ResizeSpec(CHANNELS, CHANNELS, scale=2, method="bilinear", residual="nearest"),
        (3, 3),
    ),
}
"""Name -> (spec, input size): one case per code path of every backend, and one per further spec kind."""


def seeded_weights(spec: Any, seed: int) -> upsample.Weights:
    """Seeded canonical weights with a non-zero bias (``init_weights`` starts biases at zero)."""
    weights = upsample.init_weights(spec, seed=seed)
    bias = None if weights.bias is None else np.random.default_rng(seed).normal(size=weights.bias.shape)
    return upsample.Weights(weights.kernel, None if bias is None else bias.astype(np.float32), weights.skip)


def case_inputs(name: str, seed: int) -> tuple[Any, upsample.Weights, np.ndarray, np.ndarray]:
    """``(spec, weights, x, grad_y)`` for a case: float32, NHWC, seeded."""
    spec, size = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, *size, spec.in_channels)).astype(np.float32)
    grad_y = rng.normal(size=(BATCH, *spec.output_size(size), spec.out_channels)).astype(np.float32)
    return spec, seeded_weights(spec, seed), x, grad_y


def assert_within(got: Any, want: np.ndarray, tolerance: float, what: str) -> None:
    """``max|got - want| <= tolerance * max|want|`` (the table's measure)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    error = np.abs(got - want).max() / np.abs(want).max()
    assert error <= tolerance, f"{what}: max error {error:.2e} * max|ref| exceeds the tolerance {tolerance:.0e}"


def assert_all_within(
    got: tuple[Any, Any, upsample.Weights], want: tuple[np.ndarray, np.ndarray, upsample.Weights], tolerance: Tolerance
) -> None:
    """``(output, input gradient, weight gradients)`` against the reference's, each within its tolerance."""
    assert_within(got[0], want[0], tolerance.values, "output")
    assert_within(got[1], want[1], tolerance.values, "input gradient")
    assert_gradients_within(got[2], want[2], tolerance.weight_gradients)


def assert_gradients_within(got: upsample.Weights, want: upsample.Weights, tolerance: float) -> None:
    """:func:`assert_within` for every weight gradient (kernel, bias, projection skip)."""
    for name, mine, theirs in zip(("kernel", "bias", "skip"), got.arrays(), want.arrays(), strict=True):
        assert (mine is None) == (theirs is None), f"{name} gradient present in one only"
        if theirs is not None:
            assert_within(mine, theirs, tolerance, f"{name} gradient")


def reference_results(spec: Any, weights: upsample.Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[Any, ...]:
    """``(output, input gradient, weight gradients)`` from the float64 NumPy reference."""
    grad_x, grad_weights = reference.vjp(spec, weights, x, grad_y)
    return reference.forward(spec, weights, x), grad_x, grad_weights
