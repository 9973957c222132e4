"""Specs, geometry and the NumPy reference at 1, 2 and 3 spatial axes, against oracles that share none of their
code: a per-pixel scatter loop, and PyTorch's own N-d layers in float64 (forward and autograd)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import upsample
from upsample import HeadSpec, ResizeSpec, SubpixelSpec, UpsampleSpec, init_weights, reference

RNG = np.random.default_rng(7)


# --- specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "rank"),
    [
        (lambda: UpsampleSpec(4, kernel_size=3), 2),
        (lambda: UpsampleSpec(4, kernel_size=(16,), stride=8, padding=4), 1),
        (lambda: UpsampleSpec(4, kernel_size=2, stride=(2, 2, 2)), 3),
        (lambda: UpsampleSpec(4, kernel_size=4, stride=2, padding=1, spatial_dims=3), 3),
        (lambda: UpsampleSpec(4, kernel_size=3, padding=((1, 0),)), 1),
        (lambda: SubpixelSpec(4, scale=(2, 2, 2)), 3),
        (lambda: ResizeSpec(4, scale=2, method="bilinear", spatial_dims=1), 1),
        (lambda: upsample.plan(8, (64,)), 1),
        (lambda: upsample.plan(8, 16, spatial_dims=3), 3),
    ],
)
def test_rank_is_given_or_read_from_the_tuples_and_survives_json(make, rank: int) -> None:
    spec = make()
    assert spec.spatial_dims == rank
    for stage in getattr(spec, "stages", (spec,)):
        assert len(stage.kernel_size) == rank
    again = upsample.load_spec(spec.to_json())
    assert again == spec and again.spatial_dims == rank
    assert len(spec.output_size(3 if rank != 2 else (3, 3))) == rank


def test_2d_json_has_no_rank_and_old_files_read_as_2d() -> None:
    spec = UpsampleSpec(4, 8, kernel_size=4, stride=2, padding=1)
    data = json.loads(spec.to_json())
    assert "spatial_dims" not in data
    assert set(data) == {"version", "kind", "in_channels", "out_channels", "kernel_size", "stride", "crops",
                         "residual", "use_bias"}  # fmt: skip
    assert upsample.load_spec(data).spatial_dims == 2
    for other in (SubpixelSpec(4), ResizeSpec(4), upsample.plan(4, 8)):
        assert "spatial_dims" not in other.to_json()
    assert json.loads(UpsampleSpec(4, kernel_size=(2,)).to_json())["spatial_dims"] == 1


def test_a_head_refuses_stages_of_different_ranks() -> None:
    with pytest.raises(ValueError, match=r"stages\[1\] has spatial_dims=3 but stages\[0\] has 2"):
        HeadSpec([UpsampleSpec(4, kernel_size=2), SubpixelSpec(4, scale=(2, 2, 2))])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: UpsampleSpec(4, kernel_size=(2, 2), stride=(2,)), "kernel_size has 2 items and stride has 1"),
        (lambda: SubpixelSpec(4, scale=(2, 2, 2), kernel_size=(3, 3)), "scale has 3 items and kernel_size has 2"),
        (lambda: UpsampleSpec(4, kernel_size=2, padding=((0, 0), (0, 0)), spatial_dims=3), "padding has 2 items"),
        (lambda: UpsampleSpec(4, spatial_dims=0), "spatial_dims must be positive, got 0"),
        (lambda: UpsampleSpec(4).output_size((1, 1, 1)), r"input_size must be an int or an \(h, w\) pair"),
        (lambda: UpsampleSpec(4, kernel_size=(2,)).output_size((1, 1)), r"input_size must be an int or a \(length,\)"),
    ],
)
def test_rank_mismatches_name_both_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# --- the reference against a per-pixel scatter (transposed) -------------------------------------


def scatter(spec: UpsampleSpec, weights: upsample.Weights, x: np.ndarray) -> np.ndarray:
    """Every (input pixel, tap) pair written to its output pixel one at a time; bias and skip by formula."""
    size, out = x.shape[1:-1], spec.output_size(x.shape[1:-1])
    y = np.zeros((x.shape[0], *out, spec.out_channels))
    for pixel in itertools.product(*map(range, size)):
        for tap in itertools.product(*map(range, spec.kernel_size)):
            target = tuple(
                j * s + t - crop[0] for j, s, t, crop in zip(pixel, spec.stride, tap, spec.crops, strict=True)
            )
            if all(0 <= o < n for o, n in zip(target, out, strict=True)):
                y[(slice(None), *target)] += x[(slice(None), *pixel)] @ weights.kernel[tap]
    y += 0 if weights.bias is None else weights.bias
    if spec.residual:
        skip = x if spec.residual == "nearest" else x @ weights.skip
        for target in itertools.product(*map(range, out)):
            source = tuple(math.floor((o + 0.5) * n / m) for o, n, m in zip(target, size, out, strict=True))
            y[(slice(None), *target)] += skip[(slice(None), *source)]
    return y


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "size", "residual"),
    [
        ((16,), 8, 4, (3,), None),
        ((5,), 3, ((2, -1),), (4,), "nearest"),
        ((4,), 2, ((-1, 3),), (1,), "projection"),
        ((2, 2, 2), 2, 0, (2, 1, 2), None),
        ((4, 4, 4), 2, 1, (2, 2, 2), "nearest"),
        ((3, 1, 2), (2, 1, 3), ((1, -1), (0, 0), (1, 0)), (2, 3, 1), "projection"),
    ],
)
def test_transposed_reference_matches_a_scatter_at_ranks_1_and_3(kernel, stride, padding, size, residual) -> None:
    spec = UpsampleSpec(3, 3, kernel_size=kernel, stride=stride, padding=padding, residual=residual)
    weights = init_weights(spec, seed=2, scheme="glorot_uniform").astype(np.float64)
    weights = upsample.Weights(weights.kernel, RNG.normal(size=3), weights.skip)
    x = RNG.normal(size=(2, *size, 3))
    np.testing.assert_allclose(reference.forward(spec, weights, x), scatter(spec, weights, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "spec",
    [
        UpsampleSpec(1, kernel_size=(5,), stride=3, padding=((1, -2),)),
        UpsampleSpec(1, kernel_size=(3, 2, 4), stride=(2, 2, 3), padding=((0, 1), (-1, 0), (1, 1))),
        SubpixelSpec(1, scale=(2, 1, 3), kernel_size=(3, 1, 2)),
        ResizeSpec(1, scale=(3,), kernel_size=4),
    ],
    ids=["transposed-1d", "transposed-3d", "subpixel-3d", "resize-1d"],
)
def test_coverage_counts_what_the_reference_adds_up(spec) -> None:
    """A single-channel layer of ones on an input of ones outputs, per pixel, how many (pixel, tap) pairs reach
    it (for sub-pixel and resize: how many taps read the input, not padding): the coverage map, which the spec
    computes per axis as an outer product."""
    size = (3,) * spec.spatial_dims
    ones = upsample.Weights(np.ones(spec.weight_shapes()["kernel"]), None, None)
    ones = ones if not spec.use_bias else upsample.Weights(ones.kernel, np.zeros(spec.weight_shapes()["bias"]), None)
    counted = reference.forward(spec, ones, np.ones((1, *size, 1)))[0, ..., 0]
    np.testing.assert_array_equal(spec.coverage(size), counted)
    assert spec.diagnose(size).dead == int((counted == 0).sum())


# --- the reference against PyTorch's N-d layers, forward and autograd -----------------------------


torch = pytest.importorskip("torch")
functional = torch.nn.functional
CONV = {1: functional.conv1d, 2: functional.conv2d, 3: functional.conv3d}
TRANSPOSED = {1: functional.conv_transpose1d, 2: functional.conv_transpose2d, 3: functional.conv_transpose3d}
LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def channels_first(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, -1, 1)


def monai_pixelshuffle(x, scale: tuple[int, ...]):
    """MONAI's ``pixelshuffle`` (``monai.networks.utils``) written out: ``(B, C*prod(r), *S)`` -> ``(B, C, *S*r)``."""
    rank = len(scale)
    batch, channels, *size = x.shape
    out_channels = channels // math.prod(scale)
    x = x.reshape(batch, out_channels, *scale, *size)
    order = [0, 1] + [i for a in range(rank) for i in (2 + rank + a, 2 + a)]
    return x.permute(order).reshape(batch, out_channels, *(n * r for n, r in zip(size, scale, strict=True)))


def torch_layer(spec, params: dict, x):
    """The layer in torch float64 ops, channels-first, from torch's own N-d functions; ``params`` holds the
    canonical arrays as tensors (``kernel``, and ``bias``/``skip`` when the spec has them)."""
    rank, kernel = spec.spatial_dims, params["kernel"]
    if spec.KIND == "transposed":  # torch: (C_in, C_out, *k); crops as negative pads, added rows as pads
        full = TRANSPOSED[rank](x, kernel.permute(rank, rank + 1, *range(rank)), stride=spec.stride)
        y = functional.pad(full, [side for crop in reversed(spec.crops) for side in (-crop[0], -crop[1])])
    else:  # torch: (C_conv, C_in, *k), padding "same" pads (k - 1) // 2 before
        x_in = x
        if spec.KIND == "resize":
            mode = "nearest" if spec.method == "nearest" else LINEAR[rank]
            extra = {} if mode == "nearest" else {"align_corners": False}
            x_in = functional.interpolate(x, scale_factor=spec.scale, mode=mode, **extra)
        y = CONV[rank](x_in, kernel.permute(rank + 1, rank, *range(rank)), padding="same")
    if "bias" in params:
        y = y + params["bias"].reshape(1, -1, *(1,) * rank)
    if spec.KIND == "subpixel":
        y = monai_pixelshuffle(y, spec.scale)
    if spec.residual is not None:
        skip = x if spec.residual == "nearest" else torch.einsum("bi...,io->bo...", x, params["skip"])
        y = y + functional.interpolate(skip, size=tuple(y.shape[2:]), mode="nearest-exact")  # floor((o + .5) * n / m)
    return y


TORCH_CASES = [
    UpsampleSpec(3, 2, kernel_size=(16,), stride=8, padding=4),
    UpsampleSpec(3, 3, kernel_size=(4,), stride=2, padding=((2, -1),), residual="nearest"),
    UpsampleSpec(3, 2, kernel_size=(4, 4, 4), stride=2, padding=1, residual="projection"),
    UpsampleSpec(3, 2, kernel_size=(2, 3, 1), stride=(2, 1, 3), padding=((0, 1), (1, 0), (0, -1))),
    SubpixelSpec(3, 2, scale=(3,), kernel_size=3),
    SubpixelSpec(3, 3, scale=(2, 2, 2), kernel_size=(3, 2, 1), residual="nearest"),
    ResizeSpec(3, 2, scale=(2,), method="nearest", kernel_size=3),
    ResizeSpec(3, 2, scale=(4,), method="bilinear", kernel_size=4, residual="projection"),
    ResizeSpec(3, 2, scale=(2, 2, 2), method="nearest", kernel_size=3),
    ResizeSpec(3, 3, scale=(2, 1, 3), method="bilinear", kernel_size=(3, 2, 3), residual="nearest"),
]


@pytest.mark.parametrize("spec", TORCH_CASES, ids=lambda s: f"{s.KIND}-{s.spatial_dims}d-{s.residual}")
def test_reference_and_its_vjp_match_torch_at_ranks_1_and_3(spec) -> None:
    weights = init_weights(spec, seed=3).astype(np.float64)
    if spec.use_bias:
        weights = upsample.Weights(weights.kernel, RNG.normal(size=weights.bias.shape), weights.skip)
    size = (3,) if spec.spatial_dims == 1 else (2, 3, 2)
    x = RNG.normal(size=(2, *size, spec.in_channels))
    y = reference.forward(spec, weights, x)
    grad_y = RNG.normal(size=y.shape)

    params = {
        name: torch.tensor(np.asarray(array), requires_grad=True)
        for name, array in zip(("kernel", "bias", "skip"), weights.arrays(), strict=True)
        if array is not None
    }
    x_torch = torch.tensor(channels_first(x), requires_grad=True)
    y_torch = torch_layer(spec, params, x_torch)
    np.testing.assert_allclose(channels_first(y), y_torch.detach().numpy(), rtol=1e-10, atol=1e-10)

    (y_torch * torch.from_numpy(channels_first(grad_y))).sum().backward()
    grad_x, grad_weights = reference.vjp(spec, weights, x, grad_y)
    np.testing.assert_allclose(channels_first(grad_x), x_torch.grad.numpy(), rtol=1e-10, atol=1e-10)
    for name, param in params.items():
        np.testing.assert_allclose(getattr(grad_weights, name), param.grad.numpy(), rtol=1e-10, atol=1e-10)
