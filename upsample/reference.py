"""The NumPy reference forward pass and its VJP: the oracle every backend is tested against.

Written for obviousness, not speed, float64 throughout, channels-last ``(N, *spatial, C)`` for 1, 2 or 3
spatial axes, one kind of spec at a time:

- transposed (``UpsampleSpec``): the full transposed-convolution output is built by a loop over kernel
  taps (input pixel ``j`` adds ``x[j] @ kernel[t]`` to full pixel ``j * s + t * d``), then cropped or
  padded per the conventions (docs/conventions.md);
- sub-pixel (``SubpixelSpec``): a stride-1 "same" convolution (a loop over taps on the zero-padded
  input), then the CRD pixel shuffle as a loop over the channel and the sub-pixel;
- resize (``ResizeSpec``): a resize written as taps per axis, each a gather of source pixels with a
  weight, as ONNX ``Resize`` defines them (:mod:`upsample.interpolation`: nearest one tap, linear two, cubic
  four), then the same convolution.

Then bias, the blur (:class:`~upsample.Blur`: taps per axis, a resize that keeps the size) and the residual (a
nearest gather) are applied. With ``groups``, every ``x @ kernel[t]`` is one product per
group (:func:`_product`). Each VJP is the adjoint of its forward, step by step.
Nothing is a product with a 0/1 matrix and no tap of weight 0 is summed, so a NaN or an infinity reaches
exactly the outputs that read it (``0 * NaN`` would be NaN everywhere), as in the native layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from upsample import conv_geometry, geometry, kinds, resize_ops
from upsample.blur import Blur
from upsample.checks import check_input
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

Spec = UpsampleSpec | SubpixelSpec | ResizeSpec
ConvSpec = SubpixelSpec | ResizeSpec


def forward(spec: Spec, weights: Weights, x: np.ndarray) -> np.ndarray:
    """The layer ``spec`` describes, on channels-last ``x`` (``(N, *spatial, C)``: NHWC in 2-D); returns float64
    in the same layout. A head (``HeadSpec``) runs in inference mode (``upsample.head_reference`` has training
    mode and the running statistics)."""
    return kinds.resolve(kinds.kind_of(spec).reference).forward(spec, weights, x)  # type: ignore[no-any-return]


def vjp(spec: Spec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, Weights]:
    """Gradients of ``sum(forward(spec, weights, x) * grad_y)`` w.r.t. ``x`` and every weight.

    Returns ``(grad_x, grad_weights)``, float64, canonical layout (a head: inference mode).
    """
    return kinds.resolve(kinds.kind_of(spec).reference).vjp(spec, weights, x, grad_y)  # type: ignore[no-any-return]


Step = Callable[[Any, np.ndarray, Any, Any], np.ndarray]
"""A kind's own step: ``(spec, x, kernel, bias) -> y``, the bias added where the kind adds it; no residual (the
kernel is ``None`` for a resize alone)."""
StepVjp = Callable[[Any, np.ndarray, Any, np.ndarray], tuple[np.ndarray, Any, np.ndarray]]
"""Its VJP: ``(spec, x, kernel, grad_y) -> (grad_x, grad_kernel, grad_bias)``."""


def _pixel_sum(grad: np.ndarray) -> np.ndarray:
    """A per-channel bias's gradient: the sum over the batch and every pixel."""
    return grad.sum(axis=tuple(range(grad.ndim - 1)))


class Layer(NamedTuple):
    """One layer kind's reference: its own step, then the residual every kind shares."""

    step: Step
    step_vjp: StepVjp

    def forward(self, spec: Spec, weights: Weights, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        check_input(spec, x.shape, "NHWC", np.issubdtype(x.dtype, np.floating), str(x.dtype))
        weights.check(spec)  # type: ignore[arg-type]
        x = x.astype(np.float64)
        kernel = None if weights.kernel is None else np.asarray(weights.kernel, dtype=np.float64)
        bias = 0.0 if weights.bias is None else np.asarray(weights.bias, dtype=np.float64)
        y = self.step(spec, x, kernel, bias)
        if spec.blur is not None:
            y = _resize(y, _blur_taps(spec.blur, y.shape[1:-1]))
        if spec.residual is not None:
            skip = x if spec.residual == "nearest" else x @ np.asarray(weights.skip, dtype=np.float64)
            y = y + _resize(skip, _nearest_taps(x.shape[1:-1], y.shape[1:-1]))
        return y

    def vjp(self, spec: Spec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, Weights]:
        x = np.asarray(x, dtype=np.float64)
        self.forward(spec, weights, x[:1])  # same checks as the forward pass
        kernel = None if weights.kernel is None else np.asarray(weights.kernel, dtype=np.float64)
        size = x.shape[1:-1]
        out_size = spec.output_size(size)
        grad_y = np.asarray(grad_y, dtype=np.float64)
        expected = (x.shape[0], *out_size, spec.out_channels)
        if grad_y.shape != expected:
            raise ValueError(f"grad_y must have shape {expected}, got {grad_y.shape}")
        grad_step = grad_y if spec.blur is None else _resize_vjp(grad_y, _blur_taps(spec.blur, out_size), out_size)
        grad_x, grad_kernel, grad_bias = self.step_vjp(spec, x, kernel, grad_step)
        grad_skip = None
        if spec.residual is not None:
            gathered = _resize_vjp(grad_y, _nearest_taps(size, out_size), size)
            if spec.residual == "nearest":
                grad_x = grad_x + gathered
            else:
                skip = np.asarray(weights.skip, dtype=np.float64)
                grad_x = grad_x + gathered @ skip.T
                grad_skip = _channel_outer(x, gathered)
        return grad_x, Weights(grad_kernel, grad_bias if spec.use_bias else None, grad_skip)


def _transposed_step(spec: UpsampleSpec, x: np.ndarray, kernel: np.ndarray, bias: Any) -> np.ndarray:
    return _crop(_transposed(x, kernel, spec), spec.crops) + bias


def _transposed_step_vjp(
    spec: UpsampleSpec, x: np.ndarray, kernel: np.ndarray, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (*_transposed_vjp(x, kernel, spec, grad_y), _pixel_sum(grad_y))


def _subpixel_step(spec: SubpixelSpec, x: np.ndarray, kernel: np.ndarray, bias: Any) -> np.ndarray:
    return _shuffle(_same_conv(x, kernel, spec) + bias, spec.scale)  # one bias value per conv channel


def _subpixel_step_vjp(
    spec: SubpixelSpec, x: np.ndarray, kernel: np.ndarray, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grad_conv = _unshuffle(grad_y, spec.scale)
    return (*_same_conv_vjp(x, kernel, spec, grad_conv), _pixel_sum(grad_conv))


def _resize_step(spec: ResizeSpec, x: np.ndarray, kernel: np.ndarray | None, bias: Any) -> np.ndarray:
    resized = _resize(x, _resize_taps(spec, x.shape[1:-1]))
    return resized if kernel is None else _same_conv(resized, kernel, spec) + bias  # None: a resize alone


def _resize_step_vjp(
    spec: ResizeSpec, x: np.ndarray, kernel: np.ndarray | None, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    size = x.shape[1:-1]
    taps = _resize_taps(spec, size)
    if kernel is None:
        return _resize_vjp(grad_y, taps, size), None, _pixel_sum(grad_y)
    grad_resized, grad_kernel = _same_conv_vjp(_resize(x, taps), kernel, spec, grad_y)
    return _resize_vjp(grad_resized, taps, size), grad_kernel, _pixel_sum(grad_y)


def _channel_outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum over batch and pixels of a[..., i] * b[..., o]``: the gradient of a per-pixel matrix ``(i, o)``."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def _taps(kernel_size: tuple[int, ...]) -> itertools.product[tuple[int, ...]]:
    """Every kernel tap, one index per spatial axis."""
    return itertools.product(*(range(k) for k in kernel_size))


# --- grouped products: each group's input channels reach only its own outputs -----------------


def _blocks(tap: np.ndarray, groups: int, transposed: bool) -> np.ndarray:
    """A kernel tap as one matrix per group, ``(G, C_in / G, C_out / G)``: a transposed kernel's tap is
    ``(C_in, C_out / G)``, a convolution's ``(C_in / G, C_out)`` (torch's orders)."""
    if transposed:
        return tap.reshape(groups, -1, tap.shape[-1])
    return tap.reshape(tap.shape[0], groups, -1).transpose(1, 0, 2)


def _product(x: np.ndarray, tap: np.ndarray, groups: int, transposed: bool) -> np.ndarray:
    """``x @ tap`` group by group: input channels of group ``g`` times that group's block."""
    parts = x.reshape(*x.shape[:-1], groups, -1)
    return np.einsum("...gi,gio->...go", parts, _blocks(tap, groups, transposed)).reshape(*x.shape[:-1], -1)


def _product_vjp(grad: np.ndarray, tap: np.ndarray, groups: int, transposed: bool) -> np.ndarray:
    """The adjoint of :func:`_product` in ``x``: ``grad @ block.T`` group by group."""
    parts = grad.reshape(*grad.shape[:-1], groups, -1)
    return np.einsum("...go,gio->...gi", parts, _blocks(tap, groups, transposed)).reshape(*grad.shape[:-1], -1)


def _tap_gradient(x: np.ndarray, grad: np.ndarray, groups: int, transposed: bool) -> np.ndarray:
    """The adjoint of :func:`_product` in the tap: per group, the sum over batch and pixels of its inputs times
    its output gradients, laid out as the tap."""
    inputs = x.reshape(-1, groups, x.shape[-1] // groups)
    grads = grad.reshape(-1, groups, grad.shape[-1] // groups)
    blocks = np.einsum("pgi,pgo->gio", inputs, grads)
    if transposed:
        return blocks.reshape(-1, blocks.shape[-1])
    return blocks.transpose(1, 0, 2).reshape(blocks.shape[1], -1)


# --- transposed convolution ------------------------------------------------------------------


def _strided(tap: tuple[int, ...], size: tuple[int, ...], spec: UpsampleSpec) -> tuple[slice, ...]:
    """The full-output pixels that tap ``tap`` writes to: ``j * s + t * d`` for every input pixel ``j``, per axis."""
    axes = zip(tap, size, spec.stride, spec.dilation, strict=True)
    return (slice(None), *(slice(t * d, t * d + (n - 1) * s + 1, s) for t, n, s, d in axes))


def _transposed(x: np.ndarray, kernel: np.ndarray, spec: UpsampleSpec) -> np.ndarray:
    """The full (uncropped) transposed convolution: each tap adds ``x @ kernel[t]`` at stride ``s``."""
    size = x.shape[1:-1]
    full = np.zeros((x.shape[0], *spec.full_size(size), spec.out_channels))
    for tap in _taps(spec.kernel_size):
        full[_strided(tap, size, spec)] += _product(x, kernel[tap], spec.groups, transposed=True)
    return full


def _transposed_vjp(
    x: np.ndarray, kernel: np.ndarray, spec: UpsampleSpec, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Undo the crop, then for each tap gather the strided output pixels it wrote to."""
    size = x.shape[1:-1]
    grad_full = _crop(grad_y, tuple((-begin, -end) for begin, end in spec.crops))  # zero where the crop removed
    assert grad_full.shape[1:-1] == spec.full_size(size)
    grad_x = np.zeros_like(x)
    grad_kernel = np.zeros_like(kernel)
    for tap in _taps(spec.kernel_size):
        reached = grad_full[_strided(tap, size, spec)]
        grad_x += _product_vjp(reached, kernel[tap], spec.groups, transposed=True)
        grad_kernel[tap] = _tap_gradient(x, reached, spec.groups, transposed=True)
    return grad_x, grad_kernel


def _crop(full: np.ndarray, crops: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Remove positive crops and add zero rows for negative ones, on every spatial axis."""
    kept, pads = full, [(0, 0)]
    for a, crop in enumerate(crops):
        (start, stop), pad = geometry.slice_and_pad(crop, full.shape[1 + a])
        kept = np.take(kept, range(start, stop), axis=1 + a)
        pads.append(pad)
    return np.pad(kept, [*pads, (0, 0)])


# --- stride-1 "same" convolution, pixel shuffle, resize ---------------------------------------


def _window(tap: tuple[int, ...], size: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[slice, ...]:
    """The padded-input pixels tap ``tap`` reads for every output pixel: ``o + t * d`` per axis."""
    return (slice(None), *(slice(t * d, t * d + n) for t, n, d in zip(tap, size, dilation, strict=True)))


def _same_conv(x: np.ndarray, kernel: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Cross-correlation ``y[o] = sum_t x_padded[o + t * d] @ kernel[t]`` (grouped), padded by ``spec.padding``."""
    size = x.shape[1:-1]
    padded = np.pad(x, [(0, 0), *spec.padding, (0, 0)])
    y = np.zeros((*x.shape[:-1], kernel.shape[-1]))
    for tap in _taps(kernel.shape[:-2]):
        y += _product(padded[_window(tap, size, spec.dilation)], kernel[tap], spec.groups, transposed=False)
    return y


def _same_conv_vjp(
    x: np.ndarray, kernel: np.ndarray, spec: ConvSpec, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each tap sends ``grad_y @ kernel[t].T`` back to the padded input pixels it read; padding is dropped."""
    size = x.shape[1:-1]
    padded = np.pad(x, [(0, 0), *spec.padding, (0, 0)])
    grad_padded = np.zeros_like(padded)
    grad_kernel = np.zeros_like(kernel)
    for tap in _taps(kernel.shape[:-2]):
        window = _window(tap, size, spec.dilation)
        grad_padded[window] += _product_vjp(grad_y, kernel[tap], spec.groups, transposed=False)
        grad_kernel[tap] = _tap_gradient(padded[window], grad_y, spec.groups, transposed=False)
    inside = (slice(None), *(slice(before, before + n) for (before, _), n in zip(spec.padding, size, strict=True)))
    return grad_padded[inside], grad_kernel


def _subpixel(subpixel: tuple[int, ...], scale: tuple[int, ...], channel: int) -> tuple[slice | int, ...]:
    """Channel ``channel`` of the output pixels at sub-pixel ``subpixel``: ``i::r`` per axis."""
    pixels = tuple(slice(i, None, r) for i, r in zip(subpixel, scale, strict=True))
    return (slice(None), *pixels, channel)


def _shuffle(z: np.ndarray, scale: tuple[int, ...]) -> np.ndarray:
    """CRD pixel shuffle of channels-last ``z``: channel ``shuffle_channel("CRD", c, i)`` -> channel ``c`` at
    sub-pixel ``i`` (one index per axis)."""
    channels = z.shape[-1] // int(np.prod(scale))
    y = np.zeros((z.shape[0], *(n * r for n, r in zip(z.shape[1:-1], scale, strict=True)), channels))
    for c in range(channels):
        for subpixel in conv_geometry.subpixels(scale):
            read = conv_geometry.shuffle_channel("CRD", c, subpixel, channels, scale)
            y[_subpixel(subpixel, scale, c)] = z[..., read]
    return y


def _unshuffle(y: np.ndarray, scale: tuple[int, ...]) -> np.ndarray:
    """The adjoint (and inverse) of :func:`_shuffle` on channels-last arrays."""
    channels = y.shape[-1]
    z = np.zeros(
        (y.shape[0], *(n // r for n, r in zip(y.shape[1:-1], scale, strict=True)), channels * int(np.prod(scale)))
    )
    for c in range(channels):
        for subpixel in conv_geometry.subpixels(scale):
            z[..., conv_geometry.shuffle_channel("CRD", c, subpixel, channels, scale)] = y[
                _subpixel(subpixel, scale, c)
            ]
    return z


Tap = tuple[np.ndarray, np.ndarray]
"""One tap of a resize along an axis: ``(source index, weight)`` per output pixel."""
AxisTaps = tuple[Tap, ...]
Resize = tuple[AxisTaps, ...]
"""The taps of a resize, one entry per spatial axis."""


def _resize_taps(spec: ResizeSpec, size: tuple[int, ...]) -> Resize:
    """The taps of the spec's resize on each axis, as :mod:`upsample.interpolation` defines them (ONNX
    ``Resize``), in the slots :func:`upsample.resize_ops.axis_gathers` lays them out (weight 0 where an output
    pixel reads fewer pixels; such taps are never summed here)."""
    interpolation = spec.interpolation
    return tuple(
        resize_ops.axis_gathers(interpolation, length, out_length, scale)
        for length, out_length, scale in zip(size, spec.output_size(size), spec.axis_scales, strict=True)
    )


def _nearest_taps(size: tuple[int, ...], out_size: tuple[int, ...]) -> Resize:
    """Nearest resize (source ``floor((dst + 0.5) * in / out)``, any sizes): one tap of weight 1 per axis."""
    return tuple(
        ((np.array(geometry.nearest_indices(length, out_length)), np.ones(out_length)),)
        for length, out_length in zip(size, out_size, strict=True)
    )


def _blur_taps(blur: Blur, size: tuple[int, ...]) -> Resize:
    """The taps of ``blur`` on each axis (it keeps the size): per output pixel the pixels its taps read (zero rows
    left out), laid out in slots as :func:`_resize` takes them."""
    axes = []
    for axis, length in enumerate(size):
        pairs = [blur.sources(axis, length, p) or [(p, 0.0)] for p in range(length)]
        axes.append(resize_ops.slots([([s for s, _ in read], [w for _, w in read]) for read in pairs]))
    return tuple(axes)


def _resize(x: np.ndarray, taps: Resize) -> np.ndarray:
    """Resize one spatial axis after the other: each output pixel is the sum over its taps of
    ``weight * x[source]``, taps of weight 0 left out, so a NaN or inf reaches only the pixels it is read by."""
    for axis, axis_taps in enumerate(taps, start=1):
        moved = np.moveaxis(x, axis, 0)
        out = np.zeros((len(axis_taps[0][0]), *moved.shape[1:]))
        for source, weight in axis_taps:
            used = np.flatnonzero(weight)
            out[used] += weight[used].reshape(-1, *(1,) * (moved.ndim - 1)) * moved[source[used]]
        x = np.moveaxis(out, 0, axis)
    return x


def _resize_vjp(grad: np.ndarray, taps: Resize, size: tuple[int, ...]) -> np.ndarray:
    """The adjoint of :func:`_resize`: each output pixel's gradient, times its weight, is added to the source
    pixel of each tap (a scatter-add, last axis first), so a NaN gradient reaches only the pixels read."""
    for axis, axis_taps, length in reversed(tuple(zip(range(1, len(taps) + 1), taps, size, strict=True))):
        moved = np.moveaxis(grad, axis, 0)
        out = np.zeros((length, *moved.shape[1:]))
        for source, weight in axis_taps:
            used = np.flatnonzero(weight)
            np.add.at(out, source[used], weight[used].reshape(-1, *(1,) * (moved.ndim - 1)) * moved[used])
        grad = np.moveaxis(out, 0, axis)
    return grad


TRANSPOSED = Layer(_transposed_step, _transposed_step_vjp)
SUBPIXEL = Layer(_subpixel_step, _subpixel_step_vjp)
RESIZE = Layer(_resize_step, _resize_step_vjp)
"""The rows :data:`upsample.kinds.KINDS` names for the three layer kinds."""
