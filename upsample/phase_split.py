"""A transposed convolution as matrix products and a few shifted adds, over any array namespace.

XLA computes a strided transposed convolution as a convolution over the zero-dilated input, and its
gradient as more of them: on a CPU most multiply-adds hit zeros (measured in ``docs/performance.md``:
forward + backward of DCGAN's k4 s2 stage 14x slower than this formulation on JAX). Here the input
is multiplied by the kernel taps (matrix products of ``(B*pixels, C_in)`` rows: exactly the layer's
FLOPs, each tap once, none padded), and each of the ``prod(s)`` phases of the output is the sum of
shifted planes of those products, one per tap that lands in it (``geometry.phase_split``); the crop is
folded into the shifts. Its gradient is again matrix products, slices and adds.

The ops come from the caller (``jax.numpy`` or ``keras.ops``: both have ``pad``, ``reshape``,
``transpose`` and ``matmul`` with these signatures), so every backend runs the same recipe, as
einops runs one recipe per pattern with each framework's ops.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from upsample import geometry


def transposed_conv(
    ops: Any,
    x: Any,
    kernel: Any,
    stride: Sequence[int],
    crops: Sequence[geometry.Crop],
    groups: int = 1,
    dilation: Sequence[int] | None = None,
    max_pad_rank: int | None = None,
) -> Any:
    """The transposed convolution of channels-last ``x`` (``(B, *spatial, C_in)``, any number of spatial axes) by a
    canonical ``kernel (*k, C_in, C_out // groups)``, cropped by ``crops`` (negative crops add zero rows), without
    bias. A dilated kernel runs as its extent with zero taps between (:func:`dilated_kernel`); groups multiply each
    group's input channels by its own block only (:func:`_product`).

    One product per combination of the axes' steps gives that step's tap of every phase that has one
    (``(B*pixels, C_in) @ (C_in, phases*C_out)``, :class:`geometry.PhaseStep`); its rows are sliced and shifted
    onto the phase planes, the phases without a tap padded with zeros, and the planes added.
    (One product for all steps, then a slice per step, computes the same; jaxlib 0.10's XLA:CPU miscompiled
    its gradient's fusion for some small shapes, e.g. kernel (5, 1), stride (3, 1) on a 2x3 input.)
    ``max_pad_rank``: the most axes ``ops.pad`` takes (``None``: any; TensorFlow's CPU ``Pad`` takes
    :data:`TENSORFLOW_PAD_RANK`, fewer than a 3-D layer's planes ``(B, *rows, *phases, C)`` have).
    """
    if dilation is not None and set(dilation) != {1}:
        kernel = dilated_kernel(ops, kernel, dilation)
    size = tuple(x.shape[1:-1])  # the batch may be unknown while tracing: -1 keeps it
    rank, in_channels, out_channels = len(size), x.shape[-1], kernel.shape[-1] * groups
    axes = [geometry.phase_split(size[a], kernel.shape[a], stride[a], crops[a]) for a in range(rank)]
    flat = ops.reshape(x, (-1, in_channels))
    to_matrix = (rank, *range(rank), rank + 1)  # (*phases, C_in, C_out) -> (C_in, *phases, C_out)
    planes = None
    for steps in itertools.product(*(axis.steps for axis in axes)):
        taps = kernel[tuple(slice(step.first_tap, step.first_tap + step.phases) for step in steps)]
        phases = tuple(step.phases for step in steps)
        plane = ops.reshape(
            _product(ops, flat, ops.transpose(taps, to_matrix), groups), (-1, *size, *phases, out_channels)
        )
        windows = tuple(step.rows[0] for step in steps)
        if windows != tuple((0, n) for n in size):
            kept = (slice(None), *(slice(start, stop) for start, stop in windows))
            plane = plane[kept]
        row_pads = tuple(step.rows[1] for step in steps)
        phase_pads = tuple((0, s - step.phases) for s, step in zip(stride, steps, strict=True))
        plane = _pad(ops, plane, ((0, 0), *row_pads, *phase_pads, (0, 0)), max_pad_rank)
        planes = plane if planes is None else planes + plane
    # (B, *rows, *phases, C): plane row q of phase p is output pixel q * s + p, before the keep slice
    interleave = (0, *(i for a in range(rank) for i in (1 + a, 1 + rank + a)), 1 + 2 * rank)
    out = tuple(axis.rows * s for axis, s in zip(axes, stride, strict=True))
    interleaved = ops.reshape(ops.transpose(planes, interleave), (-1, *out, out_channels))
    keep = (slice(None), *(slice(*axis.keep) for axis in axes))
    return interleaved[keep]


TENSORFLOW_PAD_RANK = 6
"""The most axes TensorFlow's ``Pad`` takes on a CPU; a 3-D layer's planes ``(B, *rows, *phases, C)`` have 8."""


def _pad(ops: Any, x: Any, pads: Sequence[tuple[int, int]], max_rank: int | None) -> Any:
    """``ops.pad(x, pads)`` (zeros); above ``max_rank`` axes, one padded axis at a time on a 3-d view
    ``(before, axis, after)`` (all axes but the first must be static; an unknown batch cannot meet an empty plane).
    On JAX one 8-axis pad measured up to a third faster than the views (3-D k2 s2 forward), so only the namespace
    that needs them takes them."""
    if max_rank is None or len(pads) <= max_rank:
        return ops.pad(x, pads)
    batch = x.shape[0] if isinstance(x.shape[0], int) else -1
    shape = tuple(x.shape[1:])
    for axis, pad in enumerate(pads[1:], start=1):
        if pad == (0, 0):
            continue
        after = math.prod(shape[axis:])
        before = batch * math.prod(shape[: axis - 1]) if batch >= 0 else -1
        view = ops.pad(ops.reshape(x, (before, shape[axis - 1], after)), ((0, 0), pad, (0, 0)))
        shape = (*shape[: axis - 1], shape[axis - 1] + sum(pad), *shape[axis:])
        x = ops.reshape(view, (batch, *shape))
    return x


def _product(ops: Any, rows: Any, taps: Any, groups: int) -> Any:
    """``rows (N, C_in)`` times ``taps (C_in, *phases, C_out // G)``: ``(N, *phases, C_out)``, each group's input
    channels times its own rows of ``taps`` only (group ``g``'s outputs are channels ``g * C_out/G ...``).

    A depthwise layer (one input channel per group) is a broadcast product: for FCN's 64-channel k4 s2 stage
    (B8, 16x16, ``upsample bench``, 2-core CPU, forward / forward + backward ms) it measured 7.2 / 16.7 where the
    batched ``einsum`` took 8.2 / 18.6 on Keras/TensorFlow, and 8.5 / 14.1 against 9.6 / 19.4 on Keras/torch."""
    in_channels, per_group = taps.shape[0], taps.shape[-1]
    phases = tuple(taps.shape[1:-1])
    if groups == 1:
        return ops.matmul(rows, ops.reshape(taps, (in_channels, -1)))
    blocks = ops.reshape(taps, (groups, in_channels // groups, -1))
    if in_channels == groups:
        product = ops.reshape(rows, (-1, groups, 1)) * ops.reshape(blocks, (1, groups, -1))
    else:
        product = ops.einsum("ngi,gio->ngo", ops.reshape(rows, (-1, groups, in_channels // groups)), blocks)
    product = ops.reshape(product, (-1, groups, *phases, per_group))
    move = (0, *range(2, 2 + len(phases)), 1, 2 + len(phases))  # (N, G, *phases, c) -> (N, *phases, G, c)
    return ops.transpose(product, move)


def dilated_kernel(ops: Any, kernel: Any, dilation: Sequence[int]) -> Any:
    """``kernel (*k, C_in, C_out)`` spread to its extent ``d * (k - 1) + 1`` per axis, zero taps between: the
    same transposed (or cross-) correlation as the dilated kernel. Written with ``reshape``, ``pad`` and slicing
    only, so it runs on every namespace in the kernel's own dtype. A NaN or inf in the input reaches the pixels of
    the zero taps too (``0 * NaN``), which a native dilated layer leaves alone."""
    shape = tuple(kernel.shape)
    for axis, d in enumerate(dilation):
        if d == 1:
            continue
        taps = shape[axis]
        spaced = ops.reshape(kernel, (*shape[:axis], taps, 1, *shape[axis + 1 :]))
        pads = [(0, 0)] * (len(shape) + 1)
        pads[axis + 1] = (0, d - 1)
        spaced = ops.reshape(ops.pad(spaced, pads), (*shape[:axis], taps * d, *shape[axis + 1 :]))
        shape = (*shape[:axis], d * (taps - 1) + 1, *shape[axis + 1 :])
        kernel = spaced[(slice(None),) * axis + (slice(0, shape[axis]),)]
    return kernel


def _per_axis(ops: Any, matrices: Sequence[Any], kernel: Any) -> Any:
    """``kernel (*k, C_in, C_out)`` with axis ``a``'s taps mapped through ``matrices[a] (rows, k)``."""
    rank = len(matrices)
    rows, taps = "abc"[:rank], "tuv"[:rank]
    equation = ",".join(f"{row}{tap}" for row, tap in zip(rows, taps, strict=True)) + f",{taps}io->{rows}io"
    return ops.einsum(equation, *matrices, kernel)


def nearest_resize_conv(ops: Any, x: Any, kernel: Any, scale: Sequence[int], kernel_size: Sequence[int]) -> Any:
    """Nearest upsampling of channels-last ``x`` by ``scale``, then the "same" convolution by a canonical
    ``kernel (*k, C_in, C_conv)``, without bias: one :func:`transposed_conv` of the summed kernel on the small
    input (:func:`geometry.nearest_resize_as_transposed`), with no resized copy."""
    import numpy as np

    per_axis = [geometry.nearest_resize_as_transposed(k, r) for k, r in zip(kernel_size, scale, strict=True)]
    summed = _per_axis(ops, [np.asarray(matrix, kernel.dtype) for matrix, _ in per_axis], kernel)
    return transposed_conv(ops, x, summed, scale, tuple(crop for _, crop in per_axis))
