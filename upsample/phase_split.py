"""A transposed convolution as matrix products and a few shifted adds, over any array namespace.

XLA computes a strided transposed convolution as a convolution over the zero-dilated input, and its
gradient as more of them: on a CPU most multiply-adds hit zeros (measured in ``docs/performance.md``:
forward + backward of DCGAN's k4 s2 stage 14x slower than this formulation on JAX). Here the input
is multiplied by the kernel taps (matrix products of ``(B*H*W, C_in)`` rows: exactly the layer's
FLOPs, each tap once, none padded), and each of the ``s_h * s_w`` phases of the output is the sum of
shifted planes of those products, one per tap that lands in it (``geometry.phase_split``); the crop is
folded into the shifts. Its gradient is again matrix products, slices and adds.

The ops come from the caller (``jax.numpy`` or ``keras.ops``: both have ``pad``, ``reshape``,
``transpose`` and ``matmul`` with these signatures), so every backend runs the same recipe, as
einops runs one recipe per pattern with each framework's ops.
"""

from __future__ import annotations

from typing import Any

from upsample import geometry


def transposed_conv(
    ops: Any, x: Any, kernel: Any, stride: tuple[int, int], crops: tuple[geometry.Crop, geometry.Crop]
) -> Any:
    """The transposed convolution of NHWC ``x`` by a canonical ``kernel (kh, kw, C_in, C_out)``, cropped by
    ``crops`` (negative crops add zero rows), without bias.

    One product per step ``(m, n)`` gives that step's tap of every phase that has one
    (``(B*H*W, C_in) @ (C_in, phases_h*phases_w*C_out)``, :class:`geometry.PhaseStep`); its rows are sliced
    and shifted onto the phase planes, the phases without a tap padded with zeros, and the planes added.
    (One product for all steps, then a slice per step, computes the same; jaxlib 0.10's XLA:CPU miscompiled
    its gradient's fusion for some small shapes, e.g. kernel (5, 1), stride (3, 1) on a 2x3 input.)
    """
    _, height, width, in_channels = x.shape  # the batch may be unknown while tracing: -1 keeps it
    kh, kw, _, out_channels = kernel.shape
    rows = geometry.phase_split(height, kh, stride[0], crops[0])
    cols = geometry.phase_split(width, kw, stride[1], crops[1])
    flat = ops.reshape(x, (-1, in_channels))
    planes = None
    for row in rows.steps:
        for col in cols.steps:
            taps = kernel[row.first_tap : row.first_tap + row.phases, col.first_tap : col.first_tap + col.phases]
            matrix = ops.reshape(ops.transpose(taps, (2, 0, 1, 3)), (in_channels, -1))
            plane = ops.reshape(ops.matmul(flat, matrix), (-1, height, width, row.phases, col.phases, out_channels))
            ((top, bottom), row_pad), ((left, right), col_pad) = row.rows, col.rows
            if (top, bottom, left, right) != (0, height, 0, width):
                plane = plane[:, top:bottom, left:right]
            phase_pad = ((0, stride[0] - row.phases), (0, stride[1] - col.phases))
            plane = ops.pad(plane, ((0, 0), row_pad, col_pad, *phase_pad, (0, 0)))
            planes = plane if planes is None else planes + plane
    # (B, rows, s_h, cols, s_w, C): plane row q of phase p is output pixel q * s + p, before the keep slice
    interleaved = ops.reshape(
        ops.transpose(planes, (0, 1, 3, 2, 4, 5)), (-1, rows.rows * stride[0], cols.rows * stride[1], out_channels)
    )
    return interleaved[:, rows.keep[0] : rows.keep[1], cols.keep[0] : cols.keep[1]]


def nearest_resize_conv(ops: Any, x: Any, kernel: Any, scale: tuple[int, int], kernel_size: tuple[int, int]) -> Any:
    """Nearest upsampling of NHWC ``x`` by ``scale``, then the "same" convolution by a canonical HWIO
    ``kernel``, without bias: one :func:`transposed_conv` of the summed kernel on the small input
    (:func:`geometry.nearest_resize_as_transposed`), with no resized copy."""
    import numpy as np

    (rows, crop_h), (cols, crop_w) = map(geometry.nearest_resize_as_transposed, kernel_size, scale)
    summed = ops.einsum("at,bu,tuio->abio", np.asarray(rows, kernel.dtype), np.asarray(cols, kernel.dtype), kernel)
    return transposed_conv(ops, x, summed, scale, (crop_h, crop_w))
