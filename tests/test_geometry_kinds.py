"""The stride-1 "same" convolution, pixel-shuffle and resize arithmetic of ``geometry`` (issue 15), checked
exhaustively on small parameters against documented formulas and independent NumPy formulations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import upsample
from upsample import conv_geometry, geometry
from upsample.conv_specs import ResizeSpec

ORDERS_SHAPE = list(itertools.product(range(1, 4), range(1, 4), range(1, 4)))  # (C, r_h, r_w)


@pytest.mark.parametrize("kernel", range(1, 9))
def test_same_padding_matches_tensorflow_formula(kernel: int) -> None:
    # TF "SAME" (tensorflow.org/api_docs/python/tf/nn#notes_on_padding_2): out = ceil(in / s),
    # pad_total = max((out - 1) * s + k - in, 0), pad_before = pad_total // 2; here s = 1.
    for length in range(1, 7):
        total = max((length - 1) + kernel - length, 0)
        assert conv_geometry.same_padding(kernel) == (total // 2, total - total // 2)


@pytest.mark.parametrize("kernel", range(1, 7))
def test_same_coverage_counts_taps_inside(kernel: int) -> None:
    for length in range(1, 7):
        before, after = conv_geometry.same_padding(kernel)
        padded = np.pad(np.ones(length), (before, after))
        windows = np.lib.stride_tricks.sliding_window_view(padded, kernel)
        assert conv_geometry.same_coverage(length, kernel) == windows.sum(axis=1).astype(int).tolist()


@pytest.mark.parametrize(("channels", "scale_h", "scale_w"), ORDERS_SHAPE)
def test_shuffle_channel_matches_reshape_orders(channels: int, scale_h: int, scale_w: int) -> None:
    total = channels * scale_h * scale_w
    crd = np.arange(total).reshape(channels, scale_h, scale_w)  # torch PixelShuffle's view of the channels
    dcr = np.arange(total).reshape(scale_h, scale_w, channels)  # tf.nn.depth_to_space's view
    for c, i, j in itertools.product(range(channels), range(scale_h), range(scale_w)):
        assert conv_geometry.shuffle_channel("CRD", c, (i, j), channels, (scale_h, scale_w)) == crd[c, i, j]
        assert conv_geometry.shuffle_channel("DCR", c, (i, j), channels, (scale_h, scale_w)) == dcr[i, j, c]


@pytest.mark.parametrize(("channels", "scale_h", "scale_w"), ORDERS_SHAPE)
@pytest.mark.parametrize("order", conv_geometry.SHUFFLE_ORDERS)
def test_permutation_makes_a_native_shuffle_give_the_canonical_result(
    order: str, channels: int, scale_h: int, scale_w: int
) -> None:
    scale = (scale_h, scale_w)
    canonical = np.random.default_rng(0).normal(size=channels * scale_h * scale_w)
    permutation = conv_geometry.shuffle_permutation(order, channels, scale)
    native = canonical[list(permutation)]
    for c, i, j in itertools.product(range(channels), range(scale_h), range(scale_w)):
        read = native[conv_geometry.shuffle_channel(order, c, (i, j), channels, scale)]
        assert read == canonical[conv_geometry.shuffle_channel("CRD", c, (i, j), channels, scale)]
    assert native[list(conv_geometry.inverse_permutation(permutation))].tolist() == canonical.tolist()
    assert sorted(permutation) == list(range(len(permutation)))


def test_unknown_shuffle_order_is_refused() -> None:
    with pytest.raises(ValueError, match="order must be one of.*'CDR'"):
        conv_geometry.shuffle_channel("CDR", 0, (0, 0), 1, (2, 2))


@pytest.mark.parametrize("kernel", range(1, 8))
@pytest.mark.parametrize("scale", range(1, 5))
def test_nearest_resize_is_a_transposed_convolution(kernel: int, scale: int) -> None:
    """Exhaustive over small kernels, scales and lengths: nearest resize + "same" conv (the reference) equals
    the transposed convolution (the reference again) of the summed kernel with the derived crop."""
    matrix, crop = geometry.nearest_resize_as_transposed(kernel, scale)
    rng = np.random.default_rng(kernel * 10 + scale)
    for length in range(1, 6):
        x, conv_kernel = rng.normal(size=(1, length, 1, 2)), rng.normal(size=(kernel, 1, 2, 3))
        resize = ResizeSpec(2, 3, kernel_size=(kernel, 1), scale=(scale, 1), method="nearest", use_bias=False)
        expected = upsample.reference.forward(resize, upsample.Weights(conv_kernel), x)
        transposed = upsample.UpsampleSpec(
            2, 3, kernel_size=(kernel + scale - 1, 1), stride=(scale, 1), padding=(crop, (0, 0)), use_bias=False
        )
        summed = np.einsum("at,tbio->abio", np.asarray(matrix), conv_kernel)
        actual = upsample.reference.forward(transposed, upsample.Weights(summed), x)
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)
