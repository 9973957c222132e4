"""A transposed convolution on a one-pixel input (1, 1x1, 1x1x1) as matrix products over the stored kernel: the
fast path of :class:`upsample.backends.flax.Upsample` for ungrouped, undilated layers."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype
from jax import lax

from upsample.backends.flax import common

Array = Any
Dtype = Any
Crops = tuple[tuple[int, int], ...]


TAPS_PER_STEP = 4
"""Kernel taps per step of the 1x1 product's loop (at most; see :func:`_taps_times`)."""


def _taps_times(rows: Array, kernel: Array) -> Array:
    """``rows (B, C_in)`` times every tap of ``kernel (*k, C_in, C_out)`` -> ``(prod(k), B, C_out)``.

    The taps ``(C_in, C_out)`` lie one after another in the stored kernel, so the product is taken in
    groups of taps, each group a batched matmul on its slice of the kernel, never transposed. A single
    ``einsum`` over the 4-d kernel makes XLA:CPU copy the whole kernel into a ``(C_in, kh*kw*C_out)``
    matrix on every call and back again for its gradient: 1.9-3.1x a plain matmul forward + backward in
    a bare-JAX measurement here, where groups of four taps took 1.2-2.0x
    (``docs/performance.md``, which also says why neither reaches the matmul).
    """
    *_, in_channels, out_channels = kernel.shape
    taps = int(np.prod(kernel.shape[:-2]))
    group = max(n for n in range(1, TAPS_PER_STEP + 1) if taps % n == 0)
    shared = jnp.broadcast_to(rows, (group, *rows.shape))
    per_group = lax.map(
        lambda taps_kernel: lax.dot_general(shared, taps_kernel, (((2,), (1,)), ((0,), (0,)))),
        kernel.reshape(taps // group, group, in_channels, out_channels),
    )
    return per_group.reshape(taps, rows.shape[0], out_channels)


def one_by_one(x: Array, kernel: Array, bias: Array | None, crops: Crops, dtype: Dtype | None) -> Array:
    """The transposed conv of a one-pixel input (``(B, C_in)`` times each tap, taps un-flipped), cropped, plus
    bias."""
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=dtype)
    *taps, _, out_channels = kernel.shape
    rank = len(taps)
    products = _taps_times(x.reshape(x.shape[0], x.shape[-1]), kernel).reshape(*taps, x.shape[0], out_channels)
    planes = jnp.transpose(products, (rank, *range(rank), rank + 1))  # (B, *k, C_out)
    flip = (slice(None), *(slice(None, None, -1),) * rank)
    y = common.crop(planes[flip], crops, None)
    return y if bias is None else y + bias
