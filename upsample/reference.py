"""The NumPy reference forward pass and its VJP: the oracle every backend is tested against.

Written for obviousness, not speed, float64 throughout, NHWC, one kind of spec at a time:

- transposed (``UpsampleSpec``): the full transposed-convolution output is built by a loop over kernel
  taps (input pixel ``j`` adds ``x[j] @ kernel[t]`` to full pixel ``j * s + t``), then cropped or
  padded per the conventions (docs/conventions.md);
- sub-pixel (``SubpixelSpec``): a stride-1 "same" convolution (a loop over taps on the zero-padded
  input), then the CRD pixel shuffle as a loop over ``(channel, i, j)``;
- resize (``ResizeSpec``): a resize written as taps per axis, each a gather of source pixels with a
  weight (nearest: one tap of weight 1 at the source pixel; bilinear: the two half-pixel taps), then the
  same convolution.

Then bias and residual (a nearest gather) are added. Each VJP is the adjoint of its forward, step by step.
Nothing is a product with a 0/1 matrix and no tap of weight 0 is summed, so a NaN or an infinity reaches
exactly the outputs that read it (``0 * NaN`` would be NaN everywhere), as in the native layers.
"""

from __future__ import annotations

import sys

import numpy as np

from upsample import geometry
from upsample.checks import check_input
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

Spec = UpsampleSpec | SubpixelSpec | ResizeSpec


def forward(spec: Spec, weights: Weights, x: np.ndarray) -> np.ndarray:
    """The layer ``spec`` describes, on NHWC ``x``; returns float64 NHWC. A head (``HeadSpec``) runs in
    inference mode (``upsample.head_reference`` has training mode and the running statistics)."""
    if _is_head(spec):
        from upsample import head_reference

        return head_reference.forward(spec, weights, x, training=False)[0]  # type: ignore[arg-type]
    x = np.asarray(x)
    check_input(spec, x.shape, "NHWC", np.issubdtype(x.dtype, np.floating), str(x.dtype))
    weights.check(spec)  # type: ignore[arg-type]
    x = x.astype(np.float64)
    kernel = np.asarray(weights.kernel, dtype=np.float64)
    bias = 0.0 if weights.bias is None else np.asarray(weights.bias, dtype=np.float64)
    if isinstance(spec, SubpixelSpec):
        y = _shuffle(_same_conv(x, kernel) + bias, spec.scale)  # one bias value per conv channel
    elif isinstance(spec, ResizeSpec):
        y = _same_conv(_resize(x, _resize_taps(spec, x.shape[1:3])), kernel) + bias
    else:
        y = _crop(_transposed(x, kernel, spec), spec.crops) + bias
    if spec.residual is not None:
        skip = x if spec.residual == "nearest" else x @ np.asarray(weights.skip, dtype=np.float64)
        y = y + _resize(skip, _nearest_taps(x.shape[1:3], y.shape[1:3]))
    return y


def vjp(spec: Spec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, Weights]:
    """Gradients of ``sum(forward(spec, weights, x) * grad_y)`` w.r.t. ``x`` and every weight.

    Returns ``(grad_x, grad_weights)``, float64, canonical layout (a head: inference mode).
    """
    if _is_head(spec):
        from upsample import head_reference

        return head_reference.vjp(spec, weights, x, grad_y, training=False)  # type: ignore[arg-type,return-value]
    x = np.asarray(x, dtype=np.float64)
    forward(spec, weights, x[:1])  # same checks as the forward pass
    kernel = np.asarray(weights.kernel, dtype=np.float64)
    batch, in_h, in_w, _ = x.shape
    out_h, out_w = spec.output_size((in_h, in_w))
    grad_y = np.asarray(grad_y, dtype=np.float64)
    if grad_y.shape != (batch, out_h, out_w, spec.out_channels):
        raise ValueError(f"grad_y must have shape {(batch, out_h, out_w, spec.out_channels)}, got {grad_y.shape}")

    if isinstance(spec, SubpixelSpec):
        grad_conv = _unshuffle(grad_y, spec.scale)
        grad_x, grad_kernel = _same_conv_vjp(x, kernel, grad_conv)
        grad_bias = grad_conv.sum(axis=(0, 1, 2))
    elif isinstance(spec, ResizeSpec):
        taps = _resize_taps(spec, (in_h, in_w))
        grad_resized, grad_kernel = _same_conv_vjp(_resize(x, taps), kernel, grad_y)
        grad_x = _resize_vjp(grad_resized, taps, (in_h, in_w))
        grad_bias = grad_y.sum(axis=(0, 1, 2))
    else:
        grad_x, grad_kernel = _transposed_vjp(x, kernel, spec, grad_y)
        grad_bias = grad_y.sum(axis=(0, 1, 2))

    grad_skip = None
    if spec.residual is not None:
        gathered = _resize_vjp(grad_y, _nearest_taps((in_h, in_w), (out_h, out_w)), (in_h, in_w))
        if spec.residual == "nearest":
            grad_x = grad_x + gathered
        else:
            skip = np.asarray(weights.skip, dtype=np.float64)
            grad_x = grad_x + gathered @ skip.T
            grad_skip = np.einsum("bhwi,bhwo->io", x, gathered)
    return grad_x, Weights(grad_kernel, grad_bias if spec.use_bias else None, grad_skip)


# --- transposed convolution ------------------------------------------------------------------


def _transposed(x: np.ndarray, kernel: np.ndarray, spec: UpsampleSpec) -> np.ndarray:
    """The full (uncropped) transposed convolution: each tap adds ``x @ kernel[t]`` at stride ``s``."""
    batch, in_h, in_w, _ = x.shape
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    full_h, full_w = spec.full_size((in_h, in_w))
    full = np.zeros((batch, full_h, full_w, spec.out_channels))
    for th in range(kh):
        for tw in range(kw):
            full[:, th : th + (in_h - 1) * sh + 1 : sh, tw : tw + (in_w - 1) * sw + 1 : sw] += x @ kernel[th, tw]
    return full


def _transposed_vjp(
    x: np.ndarray, kernel: np.ndarray, spec: UpsampleSpec, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Undo the crop, then for each tap gather the strided output pixels it wrote to."""
    _, in_h, in_w, _ = x.shape
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    (top, bottom), (left, right) = spec.crops
    grad_full = _crop(grad_y, ((-top, -bottom), (-left, -right)))  # zero where the crop removed pixels
    assert grad_full.shape[1:3] == spec.full_size((in_h, in_w))
    grad_x = np.zeros_like(x)
    grad_kernel = np.zeros_like(kernel)
    for th in range(kh):
        for tw in range(kw):
            reached = grad_full[:, th : th + (in_h - 1) * sh + 1 : sh, tw : tw + (in_w - 1) * sw + 1 : sw]
            grad_x += reached @ kernel[th, tw].T
            grad_kernel[th, tw] = np.einsum("bhwi,bhwo->io", x, reached)
    return grad_x, grad_kernel


def _crop(full: np.ndarray, crops: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Remove positive crops and add zero rows for negative ones, on axes 1 and 2."""
    (rows, row_pad), (cols, col_pad) = (geometry.slice_and_pad(crops[a], full.shape[1 + a]) for a in (0, 1))
    kept = full[:, rows[0] : rows[1], cols[0] : cols[1]]
    return np.pad(kept, ((0, 0), row_pad, col_pad, (0, 0)))


# --- stride-1 "same" convolution, pixel shuffle, resize ---------------------------------------


def _same_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Cross-correlation ``y[o] = sum_t x_padded[o + t] @ kernel[t]``, padded by ``geometry.same_padding``."""
    _, height, width, _ = x.shape
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), geometry.same_padding(kh), geometry.same_padding(kw), (0, 0)))
    y = np.zeros((*x.shape[:3], kernel.shape[3]))
    for th in range(kh):
        for tw in range(kw):
            y += padded[:, th : th + height, tw : tw + width] @ kernel[th, tw]
    return y


def _same_conv_vjp(x: np.ndarray, kernel: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each tap sends ``grad_y @ kernel[t].T`` back to the padded input pixels it read; padding is dropped."""
    _, height, width, _ = x.shape
    kh, kw = kernel.shape[:2]
    (top, _), (left, _) = geometry.same_padding(kh), geometry.same_padding(kw)
    padded = np.pad(x, ((0, 0), geometry.same_padding(kh), geometry.same_padding(kw), (0, 0)))
    grad_padded = np.zeros_like(padded)
    grad_kernel = np.zeros_like(kernel)
    for th in range(kh):
        for tw in range(kw):
            grad_padded[:, th : th + height, tw : tw + width] += grad_y @ kernel[th, tw].T
            grad_kernel[th, tw] = np.einsum("bhwi,bhwo->io", padded[:, th : th + height, tw : tw + width], grad_y)
    return grad_padded[:, top : top + height, left : left + width], grad_kernel


def _shuffle(z: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """CRD pixel shuffle of NHWC ``z``: channel ``shuffle_channel("CRD", c, i, j)`` -> channel ``c`` at
    sub-pixel ``(i, j)``."""
    scale_h, scale_w = scale
    channels = z.shape[-1] // (scale_h * scale_w)
    batch, height, width, _ = z.shape
    y = np.zeros((batch, height * scale_h, width * scale_w, channels))
    for c in range(channels):
        for i in range(scale_h):
            for j in range(scale_w):
                y[:, i::scale_h, j::scale_w, c] = z[..., geometry.shuffle_channel("CRD", c, i, j, channels, scale)]
    return y


def _unshuffle(y: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """The adjoint (and inverse) of :func:`_shuffle` on NHWC arrays."""
    scale_h, scale_w = scale
    batch, out_h, out_w, channels = y.shape
    z = np.zeros((batch, out_h // scale_h, out_w // scale_w, channels * scale_h * scale_w))
    for c in range(channels):
        for i in range(scale_h):
            for j in range(scale_w):
                z[..., geometry.shuffle_channel("CRD", c, i, j, channels, scale)] = y[:, i::scale_h, j::scale_w, c]
    return z


Tap = tuple[np.ndarray, np.ndarray]
"""One tap of a resize along an axis: ``(source index, weight)`` per output pixel."""
AxisTaps = tuple[Tap, ...]
Resize = tuple[AxisTaps, AxisTaps]


def _resize_taps(spec: ResizeSpec, size: tuple[int, int]) -> Resize:
    """The taps of the spec's resize on each axis: nearest one tap of weight 1 at the source pixel
    (``geometry.nearest_indices``), bilinear the two taps of ``geometry.bilinear_taps``."""
    if spec.method == "nearest":
        return _nearest_taps(size, spec.output_size(size))
    axes = []
    for length, scale in zip(size, spec.scale, strict=True):
        taps = geometry.bilinear_taps(length, scale)
        low = (np.array([t.low for t in taps]), np.array([1.0 - t.weight for t in taps]))
        high = (np.array([t.high for t in taps]), np.array([t.weight for t in taps]))
        axes.append((low, high))
    return axes[0], axes[1]


def _nearest_taps(size: tuple[int, int], out_size: tuple[int, int]) -> Resize:
    """Nearest resize (source ``floor((dst + 0.5) * in / out)``, any sizes): one tap of weight 1 per axis."""
    rows, cols = (
        ((np.array(geometry.nearest_indices(length, out_length)), np.ones(out_length)),)
        for length, out_length in zip(size, out_size, strict=True)
    )
    return rows, cols


def _resize(x: np.ndarray, taps: Resize) -> np.ndarray:
    """Resize the rows, then the columns of NHWC ``x``: each output pixel is the sum over its taps of
    ``weight * x[source]``, taps of weight 0 left out, so a NaN or inf reaches only the pixels it is read by."""
    for axis, axis_taps in zip((1, 2), taps, strict=True):
        moved = np.moveaxis(x, axis, 0)
        out = np.zeros((len(axis_taps[0][0]), *moved.shape[1:]))
        for source, weight in axis_taps:
            used = np.flatnonzero(weight)
            out[used] += weight[used].reshape(-1, 1, 1, 1) * moved[source[used]]
        x = np.moveaxis(out, 0, axis)
    return x


def _resize_vjp(grad: np.ndarray, taps: Resize, size: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`_resize`: each output pixel's gradient, times its weight, is added to the source
    pixel of each tap (a scatter-add, columns then rows), so a NaN gradient reaches only the pixels read."""
    for axis, axis_taps, length in reversed(tuple(zip((1, 2), taps, size, strict=True))):
        moved = np.moveaxis(grad, axis, 0)
        out = np.zeros((length, *moved.shape[1:]))
        for source, weight in axis_taps:
            used = np.flatnonzero(weight)
            np.add.at(out, source[used], weight[used].reshape(-1, 1, 1, 1) * moved[used])
        grad = np.moveaxis(out, 0, axis)
    return grad


def _is_head(spec: object) -> bool:
    """Whether ``spec`` is a ``HeadSpec`` (none can exist before ``upsample.head`` is imported)."""
    head = sys.modules.get("upsample.head")
    return head is not None and isinstance(spec, head.HeadSpec)
