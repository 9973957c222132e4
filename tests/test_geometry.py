"""The shared per-axis arithmetic, checked exhaustively on small parameters against the frameworks'
documented output-size formulas and against the NumPy reference run on ones."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import upsample
from upsample import geometry

SMALL = list(itertools.product(range(1, 7), range(1, 5), range(1, 5)))  # (k, s, i)


@pytest.mark.parametrize(("k", "s", "i"), SMALL)
def test_torch_padding_matches_torch_output_formula(k: int, s: int, i: int) -> None:
    # torch docs: H_out = (H_in - 1) * stride - 2 * padding + kernel_size + output_padding
    for p, op in itertools.product(range(0, 4), range(0, s)):
        expected = (i - 1) * s - 2 * p + k + op
        crop = geometry.crop_from_torch(p, op)
        assert geometry.output_length(i, k, s, crop) == expected
        assert geometry.torch_args(geometry.split_for_torch(crop, s).native) == (p, op)


@pytest.mark.parametrize(("k", "s", "i"), SMALL)
def test_keras_padding_matches_keras_output_formula(k: int, s: int, i: int) -> None:
    # keras compute_conv_transpose_output_length: without output_padding "valid" gives
    # i*s + max(k - s, 0) and "same" gives i*s; with it, (i-1)*s + k - 2*pad + op, pad = k//2 for "same".
    assert geometry.output_length(i, k, s, geometry.crop_from_keras("valid", k, s, None)) == i * s + max(k - s, 0)
    assert geometry.output_length(i, k, s, geometry.crop_from_keras("same", k, s, None)) == i * s
    for op in range(0, s):
        valid = geometry.crop_from_keras("valid", k, s, op)
        same = geometry.crop_from_keras("same", k, s, op)
        assert geometry.output_length(i, k, s, valid) == (i - 1) * s + k + op
        assert geometry.output_length(i, k, s, same) == (i - 1) * s + k - 2 * (k // 2) + op


@pytest.mark.parametrize(("k", "s"), list(itertools.product(range(1, 7), range(1, 5))))
def test_keras_same_matches_design_rule(k: int, s: int) -> None:
    pad_len = s + k - 2
    left = min(math.ceil(pad_len / 2), k - 1)
    assert geometry.crop_from_keras("same", k, s, None) == (k - 1 - left, k - 1 - (pad_len - left))
    assert geometry.crop_from_keras("valid", k, s, None) == (0, min(0, k - s))


def test_keras_same_is_not_torch_expressible_when_k_minus_s_is_odd() -> None:
    # DESIGN.md: k > s and k - s odd is a one-pixel shift torch's padding/output_padding cannot make.
    for k, s in itertools.product(range(1, 9), range(1, 5)):
        crop = geometry.crop_from_keras("same", k, s, None)
        native = geometry.split_for_torch(crop, s).rest == (0, 0)
        assert native == (not (k > s and (k - s) % 2 == 1)), (k, s, crop)


@pytest.mark.parametrize("k", range(1, 7))
def test_lax_pads_round_trip(k: int) -> None:
    for crop in itertools.product(range(-2, 4), repeat=2):
        assert geometry.crop_from_lax(geometry.crop_to_lax(crop, k), k) == crop


@pytest.mark.parametrize(("k", "s"), list(itertools.product(range(1, 6), range(1, 5))))
def test_splits_reassemble_the_crop(k: int, s: int) -> None:
    for crop in itertools.product(range(-3, 4), repeat=2):
        for split in (geometry.split_for_torch(crop, s), geometry.split_for_keras(crop, s)):
            assert (split.native[0] + split.rest[0], split.native[1] + split.rest[1]) == crop
        torch_native = geometry.split_for_torch(crop, s).native
        assert torch_native[0] >= 0 and 0 <= torch_native[0] - torch_native[1] < s
        keras_native = geometry.split_for_keras(crop, s).native
        assert keras_native[0] == 0 and 0 <= -keras_native[1] < s
        lax = geometry.split_for_lax(crop, k)
        assert (lax.native[0] + lax.rest[0], lax.native[1] + lax.rest[1]) == crop
        pads = geometry.crop_to_lax(lax.native, k)
        assert all(0 <= pad <= k - 1 for pad in pads), (crop, k, pads)  # no negative pad (openxla/xla#48713)
        assert k == 1 or pads != (0, 0)  # no all-zero pads on a wide kernel (XLA operand-swap abort)


@pytest.mark.parametrize(("k", "s"), list(itertools.product(range(1, 8), range(1, 6))))
def test_keras_same_only_for_symmetric_same_crops(k: int, s: int) -> None:
    """``keras_same`` accepts exactly Keras's "same" crops, and only where they are equal on both sides."""
    same = geometry.crop_from_keras("same", k, s, None)
    accepted = [crop for crop in itertools.product(range(-4, 5), repeat=2) if geometry.keras_same(crop, k, s)]
    if k >= s and (k - s) % 2 == 0:
        assert accepted == [same] and same == ((k - s) // 2, (k - s) // 2)
    else:
        assert accepted == []


def test_slice_and_pad() -> None:
    for length, crop in itertools.product(range(1, 8), itertools.product(range(-3, 4), repeat=2)):
        if length - crop[0] - crop[1] <= 0:
            continue
        (start, stop), (lo, hi) = geometry.slice_and_pad(crop, length)
        # the window [begin, length - end) of the full axis, with positions outside it as padding
        window = range(crop[0], length - crop[1])
        assert lo == sum(1 for p in window if p < 0) and hi == sum(1 for p in window if p >= length)
        assert list(range(start, stop)) == [p for p in window if 0 <= p < length]


def test_adds_rows_exactly_when_slice_and_pad_pads() -> None:
    crops = itertools.product(range(-3, 4), repeat=2)
    for length, rows, cols in itertools.product(range(1, 8), crops, [(0, 0), (-1, 0), (0, -2), (1, 2)]):
        if length - rows[0] - rows[1] <= 0:
            continue
        pads = geometry.slice_and_pad(rows, length)[1] + geometry.slice_and_pad(cols, 8)[1]
        assert geometry.adds_rows((rows, cols)) == any(pads)


def test_nearest_indices_follow_the_float_rule() -> None:
    for i, o in itertools.product(range(1, 30), range(1, 70)):
        expected = tuple(math.floor((dst + 0.5) * i / o) for dst in range(o))
        assert geometry.nearest_indices(i, o) == expected
        if o % i == 0:
            assert expected == tuple(dst // (o // i) for dst in range(o))


@pytest.mark.parametrize(("k", "s", "i"), SMALL)
def test_coverage_equals_reference_on_ones(k: int, s: int, i: int) -> None:
    """With x = 1 and every kernel tap = 1, the reference output *is* the coverage count."""
    for crop in [(0, 0), (1, 0), (0, 2), (-1, 1), (2, -2), (-3, 3), (k + s, -k - s)]:
        if geometry.output_length(i, k, s, crop) <= 0:
            continue
        spec = upsample.UpsampleSpec(1, kernel_size=(k, 1), stride=(s, 1), padding=(crop, (0, 0)), use_bias=False)
        ones = upsample.Weights(np.ones((k, 1, 1, 1)))
        y = upsample.reference.forward(spec, ones, np.ones((1, i, 1, 1)))
        np.testing.assert_array_equal(y[0, :, 0, 0], geometry.coverage(i, k, s, crop))
        total_in_window = sum(
            1 for j in range(i) for t in range(k) if 0 <= j * s + t - crop[0] < geometry.output_length(i, k, s, crop)
        )
        assert sum(geometry.coverage(i, k, s, crop)) == total_in_window


def test_interior_overlap_is_uniform_iff_kernel_divisible_by_stride() -> None:
    # Odena et al. 2016: uniform overlap iff k % s == 0; needs an interior wider than one period.
    for k, s in itertools.product(range(1, 9), range(1, 5)):
        if k < s:
            continue
        spec = upsample.UpsampleSpec(1, kernel_size=k, stride=s)
        assert bool(spec.diagnose(6).uneven_axes) == (k % s != 0), (k, s)


def _phase_forward(x: np.ndarray, kernel: np.ndarray, stride: int, crop: geometry.Crop) -> np.ndarray:
    """The cropped 1-D transposed convolution of ``x (i, C_in)`` by the phase split (a product per step, its
    rows sliced and shifted onto the phase planes, missing phases zero), from ``geometry.phase_split`` alone."""
    split = geometry.phase_split(len(x), len(kernel), stride, crop)
    planes = np.zeros((split.rows, stride, kernel.shape[-1]))
    for step in split.steps:
        product = np.einsum("ji,tio->jto", x, kernel[step.first_tap : step.first_tap + step.phases])
        (start, stop), pad = step.rows
        planes += np.pad(product[start:stop], (pad, (0, stride - step.phases), (0, 0)))
    return planes.reshape(-1, kernel.shape[-1])[split.keep[0] : split.keep[1]]


@pytest.mark.parametrize("k", range(1, 8))
@pytest.mark.parametrize("s", range(1, 6))
def test_phase_split_is_the_transposed_convolution(k: int, s: int) -> None:
    """Exhaustive over small kernels, strides and lengths, and every pair of crops from ``-s-1 .. k+s-1`` per side
    (negative ones, and ones that move the window off the full output) on one of every three lengths: the
    phase formulation equals the reference's tap loop."""
    rng = np.random.default_rng(k * 10 + s)
    sides = range(-s - 1, k + s)
    for i in range(1, 6):
        x, kernel = rng.normal(size=(i, 2)), rng.normal(size=(k, 2, 3))
        for index, crop in enumerate(itertools.product(sides, repeat=2)):
            if index % 3 != i % 3 or geometry.output_length(i, k, s, crop) <= 0:
                continue
            spec = upsample.UpsampleSpec(
                2, 3, kernel_size=(k, 1), stride=(s, 1), padding=(crop, (0, 0)), use_bias=False
            )
            expected = upsample.reference.forward(spec, upsample.Weights(kernel[:, None]), x[None, :, None])[0, :, 0]
            np.testing.assert_allclose(_phase_forward(x, kernel, s, crop), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", range(1, 8))
@pytest.mark.parametrize("s", range(1, 6))
def test_phase_split_takes_each_tap_once(k: int, s: int) -> None:
    """Tap ``t`` lands in phase ``t % s`` (input pixel ``j`` reaches full pixel ``j * s + t``); each phase gets
    ``ceil`` or ``floor`` of ``k / s`` taps, and the steps' products take every tap exactly once (the layer's
    FLOPs, no zero taps), each phase's taps in its own steps."""
    for t in range(k):
        assert t in geometry.phase_taps(k, s, t % s)
    assert sorted(t for p in range(s) for t in geometry.phase_taps(k, s, p)) == list(range(k))
    assert {len(geometry.phase_taps(k, s, p)) for p in range(s)} <= {k // s, -(-k // s)}
    for i, crop in itertools.product(range(1, 6), [(0, 0), (1, 2), (-2, 3), (k, -s)]):
        if geometry.output_length(i, k, s, crop) <= 0:
            continue
        split = geometry.phase_split(i, k, s, crop)
        taken = [step.first_tap + p for step in split.steps for p in range(step.phases)]
        assert sorted(taken) == list(range(k)) and len(split.steps) == -(-k // s)
        for m, step in enumerate(split.steps):
            assert all(step.first_tap + p == geometry.phase_taps(k, s, p)[m] for p in range(step.phases))
            (start, stop), (before, after) = step.rows
            assert stop - start + before + after == split.rows
        assert 0 <= split.keep[0] < s and split.keep[1] - split.keep[0] == geometry.output_length(i, k, s, crop)
        assert split.keep[1] <= split.rows * s
