"""Grouped and dilated specs, their geometry, coverage, weights and NumPy reference, against oracles that share
none of their code: the frameworks' documented output-length formulas, a per-pixel scatter loop, and PyTorch's
own grouped, dilated layers in float64 (forward and autograd)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import group_cases
import numpy as np
import pytest

import upsample
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec, init_weights, reference

RNG = np.random.default_rng(11)


# --- specs -----------------------------------------------------------------------------------


def test_groups_and_dilation_are_public_and_survive_json() -> None:
    spec = UpsampleSpec(4, 8, kernel_size=4, stride=2, padding=1, groups=2, dilation=(2, 3))
    assert (spec.groups, spec.dilation, spec.extent) == (2, (2, 3), (7, 10))
    data = json.loads(spec.to_json())
    assert (data["groups"], data["dilation"]) == (2, [2, 3])
    assert upsample.load_spec(spec.to_json()) == spec
    for conv in (SubpixelSpec(4, 2, groups=2, dilation=2), ResizeSpec(6, 3, groups=3, dilation=(1, 2))):
        assert upsample.load_spec(conv.to_json()) == conv
        assert conv.extent == tuple(d * (k - 1) + 1 for k, d in zip(conv.kernel_size, conv.dilation, strict=True))


def test_specs_without_groups_or_dilation_write_what_they_always_wrote() -> None:
    for spec in (UpsampleSpec(4, 8, 4, 2, 1), SubpixelSpec(4), ResizeSpec(4), upsample.plan(4, 8)):
        text = spec.to_json()
        assert "groups" not in text.replace('"group"', "") and "dilation" not in text
    assert upsample.load_spec(UpsampleSpec(4, 8, 4, 2, 1).to_json()).groups == 1


def test_rank_is_read_from_a_dilation_tuple() -> None:
    assert UpsampleSpec(4, kernel_size=3, dilation=(2,)).spatial_dims == 1
    assert SubpixelSpec(4, dilation=(1, 2, 1)).spatial_dims == 3
    with pytest.raises(ValueError, match=r"dilation .* and kernel_size|kernel_size .* and dilation"):
        UpsampleSpec(4, kernel_size=(3, 3), dilation=(2, 2, 2))


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: UpsampleSpec(4, 6, groups=4), ValueError, r"groups must divide .* got groups=4 .*in_channels=4.*6"),
        (lambda: UpsampleSpec(6, 4, groups=4), ValueError, r"groups must divide .* groups=4 with in_channels=6"),
        (lambda: UpsampleSpec(4, groups=0), ValueError, r"groups must be positive, got 0"),
        (lambda: UpsampleSpec(4, groups=True), TypeError, r"groups must be an int, got True"),
        (lambda: UpsampleSpec(4, groups=2.0), TypeError, r"groups must be an int, got 2.0"),
        (lambda: UpsampleSpec(4, dilation=0), ValueError, r"dilation must be positive, got 0"),
        (lambda: UpsampleSpec(4, dilation=(1, -2)), ValueError, r"dilation\[1\] must be positive, got -2"),
        (lambda: SubpixelSpec(4, 3, groups=2), ValueError, r"groups must divide .* out_channels=3"),
        (lambda: ResizeSpec(4, groups=3), ValueError, r"groups must divide"),
        (lambda: SubpixelSpec(4, dilation="2"), TypeError, r"dilation must be an int, got '2'"),
    ],
)
def test_bad_groups_and_dilation_are_refused_naming_the_value(make, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()


def test_weight_shapes_params_and_flops_follow_torch() -> None:
    torch = pytest.importorskip("torch")
    cases = [
        (
            UpsampleSpec(8, 4, 3, 2, 1, groups=4, dilation=2),
            torch.nn.ConvTranspose2d(8, 4, 3, 2, 1, groups=4, dilation=2),
        ),
        (UpsampleSpec(6, 6, (5,), 2, groups=3), torch.nn.ConvTranspose1d(6, 6, 5, 2, groups=3)),
        (SubpixelSpec(4, 2, scale=2, groups=2, dilation=2), torch.nn.Conv2d(4, 8, 3, groups=2, dilation=2)),
        (ResizeSpec(6, 3, kernel_size=(1, 3, 2), groups=3), torch.nn.Conv3d(6, 3, (1, 3, 2), groups=3)),
    ]
    for spec, native in cases:
        assert spec.num_params() == sum(p.numel() for p in native.parameters())
        kernel = spec.weight_shapes()["kernel"]
        rank = spec.spatial_dims
        order = (rank, rank + 1, *range(rank)) if spec.KIND == "transposed" else (rank + 1, rank, *range(rank))
        assert tuple(native.weight.shape) == tuple(kernel[a] for a in order)
    dense, grouped = UpsampleSpec(8, 8, 4, 2, 1, use_bias=False), UpsampleSpec(8, 8, 4, 2, 1, use_bias=False, groups=4)
    assert dense.flops(5) == 4 * grouped.flops(5)


# --- geometry against the frameworks' documented formulas ----------------------------------------


def test_output_length_is_torchs_for_every_small_padding() -> None:
    """torch ``ConvTranspose`` docs: ``(i - 1) * s - 2p + d * (k - 1) + op + 1`` (op < max(s, d))."""
    for i, k, s, d, p in itertools.product(range(1, 5), range(1, 5), range(1, 4), range(1, 4), range(3)):
        for op in range(max(s, d)):
            expected = (i - 1) * s - 2 * p + d * (k - 1) + op + 1
            if expected <= 0:
                continue
            spec = UpsampleSpec(1, kernel_size=(k,), stride=s, padding=p, output_padding=op, dilation=d)
            assert spec.output_size(i) == (expected,), (i, k, s, d, p, op)


def test_output_length_is_keras_for_same_and_valid() -> None:
    """Keras ``deconv_output_length`` (keras/src/utils/conv_utils.py): the kernel replaced by its dilated extent,
    ``valid``: ``i * s + max(K - s, 0)``, ``same``: ``i * s``; with output_padding ``(i - 1) * s + K - 2 * pad + op``,
    ``pad = K // 2`` for ``same`` and 0 for ``valid``."""
    for i, k, s, d, mode in itertools.product(range(1, 5), range(1, 5), range(1, 4), range(1, 4), ("same", "valid")):
        extent = k + (k - 1) * (d - 1)
        expected = i * s + max(extent - s, 0) if mode == "valid" else i * s
        assert UpsampleSpec(1, kernel_size=(k,), stride=s, padding=mode, dilation=d).output_size(i) == (expected,)
        for op in range(s):
            pad = extent // 2 if mode == "same" else 0
            expected = (i - 1) * s + extent - 2 * pad + op
            if expected > 0:
                spec = UpsampleSpec(1, kernel_size=(k,), stride=s, padding=mode, output_padding=op, dilation=d)
                assert spec.output_size(i) == (expected,), (i, k, s, d, mode, op)


def _scatter_coverage(spec: UpsampleSpec, size: tuple[int, ...]) -> np.ndarray:
    """Coverage by a loop over every input pixel and tap: ``j * s + t * d - crop_begin`` per axis."""
    out = spec.output_size(size)
    counts = np.zeros(out, dtype=np.int64)
    for pixel in itertools.product(*(range(n) for n in size)):
        for tap in itertools.product(*(range(k) for k in spec.kernel_size)):
            axes = zip(pixel, tap, spec.stride, spec.dilation, spec.crops, strict=True)
            position = tuple(j * s + t * d - begin for j, t, s, d, (begin, _) in axes)
            if all(0 <= p < n for p, n in zip(position, out, strict=True)):
                counts[position] += 1
    return counts


def test_coverage_counts_the_dilated_taps_exactly() -> None:
    for k, s, d, crops in itertools.product(range(1, 4), range(1, 4), range(1, 4), ((0, 0), (1, 2), (-1, 1))):
        spec = UpsampleSpec(1, kernel_size=(k, 2), stride=(s, 1), padding=(crops, (0, 0)), dilation=(d, 2))
        for size in ((1, 1), (3, 2)):
            if min(spec.full_size(size)[0] - sum(crops), 1) <= 0:
                continue
            np.testing.assert_array_equal(spec.coverage(size), _scatter_coverage(spec, size))
    spec = group_cases.FIELD[3]  # 3-D, dilated on two axes
    np.testing.assert_array_equal(spec.coverage((2, 2, 2)), _scatter_coverage(spec, (2, 2, 2)))


def test_conv_kinds_coverage_counts_the_dilated_taps() -> None:
    spec = ResizeSpec(1, scale=(2,), kernel_size=3, dilation=3)
    before = (spec.extent[0] - 1) // 2
    length = 6
    expected = [sum(0 <= o + t * 3 - before < length for t in range(3)) for o in range(length)]
    assert spec.coverage(3).tolist() == expected


def test_diagnose_names_the_holes_a_dilation_leaves() -> None:
    holes = UpsampleSpec(4, kernel_size=3, stride=2, padding=0, dilation=2).diagnose(3)  # taps 0, 2, 4 at stride 2
    assert holes.dead > 0 and holes.dilation_holes == ("height", "width")
    assert "the dilation leaves holes between the kernel's taps along height and width" in holes.verdict
    assert UpsampleSpec(4, kernel_size=3, stride=1, dilation=2).diagnose(3).dilation_holes == ()  # the taps interleave
    assert UpsampleSpec(4, kernel_size=1, stride=2).diagnose(3).dilation_holes == ()  # stride gaps, no dilation


# --- the reference against a scatter loop and against torch --------------------------------------


def _scatter_transposed(spec: UpsampleSpec, weights: upsample.Weights, x: np.ndarray) -> np.ndarray:
    """The grouped, dilated transposed convolution by a loop over pixels, taps and groups (no bias, no residual)."""
    size = x.shape[1:-1]
    out = spec.output_size(size)
    y = np.zeros((x.shape[0], *out, spec.out_channels))
    per_in, per_out = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    for pixel in itertools.product(*(range(n) for n in size)):
        for tap in itertools.product(*(range(k) for k in spec.kernel_size)):
            axes = zip(pixel, tap, spec.stride, spec.dilation, spec.crops, strict=True)
            position = tuple(j * s + t * d - begin for j, t, s, d, (begin, _) in axes)
            if not all(0 <= p < n for p, n in zip(position, out, strict=True)):
                continue
            for g in range(spec.groups):
                inputs = x[(slice(None), *pixel, slice(g * per_in, (g + 1) * per_in))]
                block = weights.kernel[(*tap, slice(g * per_in, (g + 1) * per_in))]
                y[(slice(None), *position, slice(g * per_out, (g + 1) * per_out))] += inputs @ block
    return y


@pytest.mark.parametrize("spec", group_cases.SAMPLED + group_cases.FIELD[1:], ids=group_cases.spec_id)
def test_reference_is_the_scatter_loop(spec: UpsampleSpec) -> None:
    spec = spec.replace(residual=None, use_bias=False)
    weights = upsample.Weights(RNG.normal(size=spec.weight_shapes()["kernel"]), None, None)
    for size in group_cases.SIZES[spec.spatial_dims]:
        x = RNG.normal(size=(2, *size, spec.in_channels))
        np.testing.assert_allclose(
            reference.forward(spec, weights, x), _scatter_transposed(spec, weights, x), atol=1e-12
        )


TORCH_CASES = [*group_cases.SWEEP[::2], *group_cases.FIELD[1:], *group_cases.CONV]


@pytest.mark.parametrize("spec", TORCH_CASES, ids=group_cases.spec_id)
def test_reference_and_its_vjp_match_torch(spec) -> None:
    """torch's grouped, dilated ``conv_transpose``/``conv`` in float64 (the conv kinds: after
    ``F.interpolate`` or before the N-d CRD shuffle), forward and autograd."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    spec = dataclasses.replace(spec, residual=None)
    rank = spec.spatial_dims
    weights = upsample.Weights(
        RNG.normal(size=spec.weight_shapes()["kernel"]), RNG.normal(size=spec.weight_shapes()["bias"]), None
    )
    size = group_cases.SIZES[rank][1]
    x = RNG.normal(size=(2, *size, spec.in_channels))
    x_torch = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    kernel = torch.tensor(weights.kernel, requires_grad=True)
    bias = torch.tensor(weights.bias, requires_grad=True)
    if spec.KIND == "transposed":
        native = getattr(functional, f"conv_transpose{rank}d")
        padding = tuple(begin for begin, _ in spec.crops)
        extra = tuple(begin - end for begin, end in spec.crops)
        assert all(
            p >= 0 and 0 <= e < max(s, d) for p, e, s, d in zip(padding, extra, spec.stride, spec.dilation, strict=True)
        )
        y = native(x_torch, kernel.permute(rank, rank + 1, *range(rank)), bias, spec.stride, padding, extra,
                   spec.groups, spec.dilation)  # fmt: skip
    else:
        z = x_torch
        if spec.KIND == "resize":
            mode = "nearest" if spec.method == "nearest" else ("linear", "bilinear", "trilinear")[rank - 1]
            corners = {} if mode == "nearest" else {"align_corners": False}
            z = functional.interpolate(z, scale_factor=spec.scale, mode=mode, **corners)
        pads = [p for before_after in reversed(spec.padding) for p in before_after]
        conv = getattr(functional, f"conv{rank}d")
        kernel_torch = kernel.permute(rank + 1, rank, *range(rank))
        z = conv(functional.pad(z, pads), kernel_torch, bias, 1, 0, spec.dilation, spec.groups)
        if spec.KIND == "subpixel":  # MONAI's N-d pixelshuffle (monai/networks/utils.py), CRD
            batch, channels = z.shape[:2]
            c = channels // math.prod(spec.scale)
            z = z.reshape(batch, c, *spec.scale, *z.shape[2:])
            z = z.permute(0, 1, *(i for a in range(rank) for i in (2 + rank + a, 2 + a)))
            z = z.reshape(batch, c, *(n * r for n, r in zip(size, spec.scale, strict=True)))
        y = z
    np.testing.assert_allclose(np.moveaxis(y.detach().numpy(), 1, -1), reference.forward(spec, weights, x), atol=1e-10)
    grad_y = RNG.normal(size=tuple(np.moveaxis(y.detach().numpy(), 1, -1).shape))
    (y * torch.tensor(np.moveaxis(grad_y, -1, 1))).sum().backward()
    grad_x, grad_weights = reference.vjp(spec, weights, x, grad_y)
    np.testing.assert_allclose(np.moveaxis(x_torch.grad.numpy(), 1, -1), grad_x, atol=1e-10)
    np.testing.assert_allclose(kernel.grad.numpy(), grad_weights.kernel, atol=1e-10)
    np.testing.assert_allclose(bias.grad.numpy(), grad_weights.bias, atol=1e-10)


def test_a_nan_reaches_only_its_own_group() -> None:
    spec = UpsampleSpec(4, 4, kernel_size=3, stride=2, padding=1, groups=2, dilation=2)
    x = RNG.normal(size=(1, 3, 3, 4))
    x[0, 1, 1, 0] = np.nan
    y = reference.forward(spec, upsample.Weights(RNG.normal(size=(3, 3, 4, 2)), np.zeros(4), None), x)
    assert np.isnan(y[..., :2]).any() and not np.isnan(y[..., 2:]).any()


# --- initial weights ------------------------------------------------------------------------------


@pytest.mark.parametrize(("stride", "rank", "groups"), [(2, 1, 3), (4, 1, 1), (2, 2, 3), (4, 2, 3), (2, 3, 3)])
def test_bilinear_scheme_is_bilinear_upsampling_away_from_the_border(stride: int, rank: int, groups: int) -> None:
    """FCN's bilinear kernel with ``k = 2s``, crops ``s / 2``: torch's half-pixel linear interpolation except the
    outermost ``s / 2`` pixels per side, where the transposed convolution reads zeros and torch clamps."""
    torch = pytest.importorskip("torch")
    spec = UpsampleSpec(3, 3, 2 * stride, stride, stride // 2, groups=groups, spatial_dims=rank)
    weights = init_weights(spec, scheme="bilinear")
    assert weights.kernel.shape == (*(2 * stride,) * rank, 3, 3 // groups)
    x = RNG.normal(size=(2, *(5, 4, 3)[:rank], 3))
    y = reference.forward(spec, weights, x)
    mode = ("linear", "bilinear", "trilinear")[rank - 1]
    native = torch.nn.functional.interpolate(torch.tensor(np.moveaxis(x, -1, 1)), scale_factor=stride, mode=mode,
                                             align_corners=False)  # fmt: skip
    expected = np.moveaxis(native.numpy(), 1, -1)
    border = stride // 2
    inside = (slice(None), *(slice(border, n - border) for n in y.shape[1:-1]))
    np.testing.assert_allclose(y[inside], expected[inside], atol=1e-6)
    assert np.abs(y - expected).max() > 1e-3  # the border differs: zeros read, not clamped


def test_bilinear_scheme_needs_equal_channels() -> None:
    with pytest.raises(ValueError, match="in_channels == out_channels, got 4 and 8"):
        init_weights(UpsampleSpec(4, 8, 4, 2, 1, groups=4), scheme="bilinear")


def test_grouped_icnr_starts_as_nearest_upsampling() -> None:
    spec = SubpixelSpec(4, 6, scale=2, kernel_size=3, groups=2, dilation=2)
    weights = init_weights(spec, scheme="icnr")
    assert weights.kernel.shape == (3, 3, 2, 24)
    y = reference.forward(spec, weights, RNG.normal(size=(1, 4, 5, 4)))
    for i, j in itertools.product(range(2), range(2)):
        np.testing.assert_allclose(y[:, i::2, j::2], y[:, ::2, ::2], atol=1e-12)


def test_a_huge_dilation_is_refused_naming_it() -> None:
    spec = UpsampleSpec(4, kernel_size=3, dilation=10**7)
    with pytest.raises(ValueError, match=r"output along height would be 20,000,002 pixels.*dilation=10000000"):
        reference.forward(spec, init_weights(spec), np.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match=r"coverage map .*dilation=10000000"):
        spec.coverage(2)
