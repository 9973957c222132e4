"""The NumPy oracle against an even plainer per-pixel scatter, and its VJP against the transpose identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cases import cases, random_input, random_weights
from hypothesis import given, settings

from upsample import UpsampleSpec, Weights, reference


def scatter_forward(spec: UpsampleSpec, weights: Weights, x: np.ndarray) -> np.ndarray:
    """Every (input pixel, tap) pair written to its output pixel one at a time, bias and skip by formula."""
    batch, in_h, in_w, _ = x.shape
    out_h, out_w = spec.output_size((in_h, in_w))
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    (top, _), (left, _) = spec.crops
    y = np.zeros((batch, out_h, out_w, spec.out_channels))
    for jh in range(in_h):
        for jw in range(in_w):
            for th in range(kh):
                for tw in range(kw):
                    oh, ow = jh * sh + th - top, jw * sw + tw - left
                    if 0 <= oh < out_h and 0 <= ow < out_w:
                        y[:, oh, ow] += x[:, jh, jw] @ weights.kernel[th, tw]
    if spec.use_bias:
        y += weights.bias
    if spec.residual:
        skip = x if spec.residual == "nearest" else x @ weights.skip
        for oh in range(out_h):
            for ow in range(out_w):
                y[:, oh, ow] += skip[:, math.floor((oh + 0.5) * in_h / out_h), math.floor((ow + 0.5) * in_w / out_w)]
    return y


@settings(max_examples=150, deadline=None)
@given(cases(max_input=4))
def test_forward_matches_per_pixel_scatter(case: tuple) -> None:
    spec, size, batch, seed = case
    weights, x = random_weights(spec, seed), random_input(spec, batch, size, seed)
    np.testing.assert_allclose(
        reference.forward(spec, weights, x),
        scatter_forward(spec, weights, x.astype(np.float64)),
        rtol=1e-12,
        atol=1e-12,
    )


def test_stride_equal_to_kernel_is_a_pixel_shuffle() -> None:
    spec = UpsampleSpec(3, 2, kernel_size=2, stride=2, use_bias=False)
    weights, x = random_weights(spec, 1), random_input(spec, 2, (3, 4), 1)
    y = reference.forward(spec, weights, x)
    # output pixel (2h + p, 2w + q) is x[h, w] @ kernel[p, q]: no overlap, no gaps
    blocks = np.einsum("bhwi,pqio->bhpwqo", x.astype(np.float64), weights.kernel.astype(np.float64))
    np.testing.assert_allclose(y, blocks.reshape(2, 6, 8, 2), rtol=1e-12)


def test_negative_crops_add_bias_rows() -> None:
    spec = UpsampleSpec(2, 3, kernel_size=1, padding=((-1, -2), (0, -1)))
    weights, x = random_weights(spec, 2), random_input(spec, 1, (1, 1), 2)
    y = reference.forward(spec, weights, x)
    assert y.shape == (1, 4, 2, 3)
    np.testing.assert_allclose(y[0, 0, 0], weights.bias, rtol=1e-6)
    np.testing.assert_allclose(y[0, 1, 0], x[0, 0, 0] @ weights.kernel[0, 0] + weights.bias, rtol=1e-6)


@settings(max_examples=100, deadline=None)
@given(cases(max_input=5))
def test_vjp_satisfies_the_transpose_identity(case: tuple) -> None:
    """forward is affine in x and in each weight: <f(v + d) - f(v), g> = <d, grad_v>."""
    spec, size, batch, seed = case
    rng = np.random.default_rng(seed)
    weights, x = random_weights(spec, seed), random_input(spec, batch, size, seed).astype(np.float64)
    y = reference.forward(spec, weights, x)
    g = rng.normal(size=y.shape)
    grad_x, grad_w = reference.vjp(spec, weights, x, g)
    dx = rng.normal(size=x.shape)
    assert np.isclose(
        ((reference.forward(spec, weights, x + dx) - y) * g).sum(), (dx * grad_x).sum(), rtol=1e-9, atol=1e-9
    )
    for index, name in enumerate(("kernel", "bias", "skip")):
        array = weights.arrays()[index]
        if array is None:
            assert getattr(grad_w, name) is None
            continue
        delta = rng.normal(size=array.shape)
        moved = list(weights.arrays())
        moved[index] = array + delta
        change = ((reference.forward(spec, Weights(*moved), x) - y) * g).sum()
        assert np.isclose(change, (delta * getattr(grad_w, name)).sum(), rtol=1e-9, atol=1e-9), name


def test_input_checks_say_what_was_expected() -> None:
    spec = UpsampleSpec(64, kernel_size=4)
    weights = random_weights(spec, 0)
    with pytest.raises(ValueError, match=r"rank-4 NHWC tensor, got shape \(2, 64\)"):
        reference.forward(spec, weights, np.zeros((2, 64)))
    with pytest.raises(ValueError, match=r"expected NHWC with C=64, got shape \(1, 64, 1, 1\): is this NCHW\?"):
        reference.forward(spec, weights, np.zeros((1, 64, 1, 1)))
    with pytest.raises(TypeError, match="floating dtype, got int64"):
        reference.forward(spec, weights, np.zeros((1, 1, 1, 64), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"weights.kernel has shape \(3, 3, 64, 64\); the spec needs shape \(4, 4, 64, 64\)"
    ):
        reference.forward(spec, random_weights(UpsampleSpec(64, kernel_size=3), 0), np.zeros((1, 1, 1, 64)))
