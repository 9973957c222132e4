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
from collections.abc import Sequence
from typing import Any

from upsample import geometry


def transposed_conv(ops: Any, x: Any, kernel: Any, stride: Sequence[int], crops: Sequence[geometry.Crop]) -> Any:
    """The transposed convolution of channels-last ``x`` (``(B, *spatial, C_in)``, any number of spatial axes) by a
    canonical ``kernel (*k, C_in, C_out)``, cropped by ``crops`` (negative crops add zero rows), without bias.

    One product per combination of the axes' steps gives that step's tap of every phase that has one
    (``(B*pixels, C_in) @ (C_in, phases*C_out)``, :class:`geometry.PhaseStep`); its rows are sliced and shifted
    onto the phase planes, the phases without a tap padded with zeros, and the planes added.
    (One product for all steps, then a slice per step, computes the same; jaxlib 0.10's XLA:CPU miscompiled
    its gradient's fusion for some small shapes, e.g. kernel (5, 1), stride (3, 1) on a 2x3 input.)
    """
    size = tuple(x.shape[1:-1])  # the batch may be unknown while tracing: -1 keeps it
    rank, in_channels, out_channels = len(size), x.shape[-1], kernel.shape[-1]
    axes = [geometry.phase_split(size[a], kernel.shape[a], stride[a], crops[a]) for a in range(rank)]
    flat = ops.reshape(x, (-1, in_channels))
    to_matrix = (rank, *range(rank), rank + 1)  # (*phases, C_in, C_out) -> (C_in, *phases, C_out)
    planes = None
    for steps in itertools.product(*(axis.steps for axis in axes)):
        taps = kernel[tuple(slice(step.first_tap, step.first_tap + step.phases) for step in steps)]
        matrix = ops.reshape(ops.transpose(taps, to_matrix), (in_channels, -1))
        plane = ops.reshape(ops.matmul(flat, matrix), (-1, *size, *(step.phases for step in steps), out_channels))
        windows = tuple(step.rows[0] for step in steps)
        if windows != tuple((0, n) for n in size):
            kept = (slice(None), *(slice(start, stop) for start, stop in windows))
            plane = plane[kept]
        row_pads = tuple(step.rows[1] for step in steps)
        phase_pads = tuple((0, s - step.phases) for s, step in zip(stride, steps, strict=True))
        plane = ops.pad(plane, ((0, 0), *row_pads, *phase_pads, (0, 0)))
        planes = plane if planes is None else planes + plane
    # (B, *rows, *phases, C): plane row q of phase p is output pixel q * s + p, before the keep slice
    interleave = (0, *(i for a in range(rank) for i in (1 + a, 1 + rank + a)), 1 + 2 * rank)
    out = tuple(axis.rows * s for axis, s in zip(axes, stride, strict=True))
    interleaved = ops.reshape(ops.transpose(planes, interleave), (-1, *out, out_channels))
    keep = (slice(None), *(slice(*axis.keep) for axis in axes))
    return interleaved[keep]


def nearest_resize_conv(ops: Any, x: Any, kernel: Any, scale: Sequence[int], kernel_size: Sequence[int]) -> Any:
    """Nearest upsampling of channels-last ``x`` by ``scale``, then the "same" convolution by a canonical
    ``kernel (*k, C_in, C_conv)``, without bias: one :func:`transposed_conv` of the summed kernel on the small
    input (:func:`geometry.nearest_resize_as_transposed`), with no resized copy."""
    import numpy as np

    rank = len(scale)
    per_axis = [geometry.nearest_resize_as_transposed(k, r) for k, r in zip(kernel_size, scale, strict=True)]
    rows, taps = "abc"[:rank], "tuv"[:rank]
    equation = ",".join(f"{row}{tap}" for row, tap in zip(rows, taps, strict=True)) + f",{taps}io->{rows}io"
    matrices = [np.asarray(matrix, kernel.dtype) for matrix, _ in per_axis]
    summed = ops.einsum(equation, *matrices, kernel)
    return transposed_conv(ops, x, summed, scale, tuple(crop for _, crop in per_axis))
