"""A transposed convolution as one matrix product and a few shifted adds, over any array namespace.

XLA computes a strided transposed convolution as a convolution over the zero-dilated input, and its
gradient as more of them: on a CPU most multiply-adds hit zeros (measured in ``docs/performance.md``:
forward + backward of DCGAN's k4 s2 stage 14x slower than this formulation on JAX). Here the input
is multiplied by the kernel taps (matrix products of ``(B*H*W, C_in)`` rows: the layer's FLOPs, plus
the zero taps that pad a kernel to a multiple of the stride), and each of the ``s_h * s_w`` phases of
the output is the sum of
``ceil(k_h/s_h) * ceil(k_w/s_w)`` shifted planes of those products (``geometry.phases``). Its gradient
is again matrix products, slices and adds.

The ops come from the caller (``jax.numpy`` or ``keras.ops``: both have ``pad``, ``reshape``,
``transpose`` and ``matmul`` with these signatures), so every backend runs the same recipe, as
einops runs one recipe per pattern with each framework's ops.
"""

from __future__ import annotations

from typing import Any

from upsample import geometry


def full_output(ops: Any, x: Any, kernel: Any, stride: tuple[int, int]) -> Any:
    """The uncropped transposed convolution of NHWC ``x`` by a canonical ``kernel (kh, kw, C_in, C_out)``:
    ``(B, (H-1)*s_h + k_h, (W-1)*s_w + k_w, C_out)``.

    One product per step ``(m, n)`` gives all ``s_h * s_w`` phases of that step's plane at once
    (``(B*H*W, C_in) @ (C_in, s_h*s_w*C_out)``); the planes are shifted by their step and added. (One
    product for all steps, then a slice per step, computes the same; jaxlib 0.10's XLA:CPU miscompiled
    its gradient's fusion for some small shapes, e.g. kernel (5, 1), stride (3, 1) on a 2x3 input.)
    """
    _, height, width, in_channels = x.shape  # the batch may be unknown while tracing: -1 keeps it
    kh, kw, _, out_channels = kernel.shape
    rows, cols = geometry.phases(kh, stride[0]), geometry.phases(kw, stride[1])
    padded = ops.pad(kernel, ((0, rows.pad), (0, cols.pad), (0, 0), (0, 0)))
    blocks = ops.reshape(padded, (rows.steps, stride[0], cols.steps, stride[1], in_channels, out_channels))
    flat = ops.reshape(x, (-1, in_channels))
    planes = None
    for m in range(rows.steps):
        for n in range(cols.steps):
            matrix = ops.reshape(ops.transpose(blocks[m, :, n], (2, 0, 1, 3)), (in_channels, -1))
            plane = ops.reshape(ops.matmul(flat, matrix), (-1, height, width, stride[0], stride[1], out_channels))
            shift = ((0, 0), geometry.phase_shift(m, rows.steps), geometry.phase_shift(n, cols.steps))
            plane = ops.pad(plane, (*shift, (0, 0), (0, 0), (0, 0)))
            planes = plane if planes is None else planes + plane
    # (B, Qh, s_h, Qw, s_w, C): phase pixel q of phase p is output pixel q * s + p
    interleaved = ops.reshape(
        ops.transpose(planes, (0, 1, 3, 2, 4, 5)),
        (-1, rows.length(height) * stride[0], cols.length(width) * stride[1], out_channels),
    )
    full_h, full_w = geometry.full_length(height, kh, stride[0]), geometry.full_length(width, kw, stride[1])
    return interleaved[:, :full_h, :full_w]
