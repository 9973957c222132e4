"""The NumPy reference forward pass: the oracle every backend is tested against.

Written for obviousness, not speed: the full transposed-convolution output is built by a loop
over kernel taps (input pixel ``j`` adds ``x[j] @ kernel[t]`` to full pixel ``j * s + t``), then
cropped or padded per DESIGN.md, then bias and residual are added. Float64 throughout.
"""

from __future__ import annotations

import numpy as np

from upsample import geometry
from upsample.checks import check_input
from upsample.spec import UpsampleSpec
from upsample.weights import Weights


def forward(spec: UpsampleSpec, weights: Weights, x: np.ndarray) -> np.ndarray:
    """``y = crop(conv_transpose(x)) + bias + skip(x)`` for NHWC ``x``; returns float64 NHWC."""
    x = np.asarray(x)
    check_input(spec, x.shape, "NHWC", np.issubdtype(x.dtype, np.floating), str(x.dtype))
    weights.check(spec)
    x = x.astype(np.float64)
    kernel = np.asarray(weights.kernel, dtype=np.float64)
    batch, in_h, in_w, _ = x.shape
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    full_h, full_w = spec.full_size((in_h, in_w))

    full = np.zeros((batch, full_h, full_w, spec.out_channels))
    for th in range(kh):
        for tw in range(kw):
            contribution = x @ kernel[th, tw]  # (batch, in_h, in_w, C_out)
            full[:, th : th + (in_h - 1) * sh + 1 : sh, tw : tw + (in_w - 1) * sw + 1 : sw] += contribution

    y = _crop(full, spec.crops)
    if spec.use_bias:
        y = y + np.asarray(weights.bias, dtype=np.float64)
    if spec.residual is not None:
        skip = x if spec.residual == "nearest" else x @ np.asarray(weights.skip, dtype=np.float64)
        rows = geometry.nearest_indices(in_h, y.shape[1])
        cols = geometry.nearest_indices(in_w, y.shape[2])
        y = y + skip[:, rows][:, :, cols]
    return y


def vjp(spec: UpsampleSpec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, Weights]:
    """Gradients of ``sum(forward(spec, weights, x) * grad_y)`` w.r.t. ``x`` and every weight.

    The adjoint of :func:`forward`, step by step: undo the crop, then for each tap gather the
    strided output pixels it wrote to. Returns ``(grad_x, grad_weights)``, float64, canonical layout.
    """
    x = np.asarray(x, dtype=np.float64)
    forward(spec, weights, x[:1])  # same checks as the forward pass
    kernel = np.asarray(weights.kernel, dtype=np.float64)
    batch, in_h, in_w, _ = x.shape
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    out_h, out_w = spec.output_size((in_h, in_w))
    grad_y = np.asarray(grad_y, dtype=np.float64)
    if grad_y.shape != (batch, out_h, out_w, spec.out_channels):
        raise ValueError(f"grad_y must have shape {(batch, out_h, out_w, spec.out_channels)}, got {grad_y.shape}")

    full_h, full_w = spec.full_size((in_h, in_w))
    (top, bottom), (left, right) = spec.crops
    inverse = ((-top, -bottom), (-left, -right))
    grad_full = _crop(grad_y, inverse)  # zero where the crop removed pixels
    assert grad_full.shape[1:3] == (full_h, full_w)

    grad_x = np.zeros_like(x)
    grad_kernel = np.zeros_like(kernel)
    for th in range(kh):
        for tw in range(kw):
            reached = grad_full[:, th : th + (in_h - 1) * sh + 1 : sh, tw : tw + (in_w - 1) * sw + 1 : sw]
            grad_x += reached @ kernel[th, tw].T
            grad_kernel[th, tw] = np.einsum("bhwi,bhwo->io", x, reached)
    grad_bias = grad_y.sum(axis=(0, 1, 2)) if spec.use_bias else None
    grad_skip = None
    if spec.residual is not None:
        gathered = np.zeros((batch, in_h, in_w, spec.out_channels))
        rows = geometry.nearest_indices(in_h, out_h)
        cols = geometry.nearest_indices(in_w, out_w)
        for dst_r, src_r in enumerate(rows):
            for dst_c, src_c in enumerate(cols):
                gathered[:, src_r, src_c] += grad_y[:, dst_r, dst_c]
        if spec.residual == "nearest":
            grad_x += gathered
        else:
            skip = np.asarray(weights.skip, dtype=np.float64)
            grad_x += gathered @ skip.T
            grad_skip = np.einsum("bhwi,bhwo->io", x, gathered)
    return grad_x, Weights(grad_kernel, grad_bias, grad_skip)


def _crop(full: np.ndarray, crops: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Remove positive crops and add zero rows for negative ones, on axes 1 and 2."""
    (rows, row_pad), (cols, col_pad) = (geometry.slice_and_pad(crops[a], full.shape[1 + a]) for a in (0, 1))
    kept = full[:, rows[0] : rows[1], cols[0] : cols[1]]
    return np.pad(kept, ((0, 0), row_pad, col_pad, (0, 0)))
