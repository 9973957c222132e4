"""Keras 3 layers for the sub-pixel and resize kinds, on every Keras backend and both data formats.

Each layer holds a real stride-1 ``keras.layers.Conv{1,2,3}D(padding="same")`` (the spec's rank) named ``conv``
(Keras's "same" is the spec's: ``(k - 1) // 2`` before, the rest after), then ``keras.ops.depth_to_space``
(:class:`Subpixel`, square 2-D scales; any other scale the canonical CRD shuffle as a reshape and transpose) or
a resize before it (:class:`ResizeConv`): Keras's ``UpSampling{1,2,3}D`` where it computes the spec's (ONNX
``Resize``) definition (:data:`upsample.resize_table.KERAS_UPSAMPLING`: repeating pixels, and half-pixel bilinear in
2-D), else gathers and weighted sums in ``keras.ops`` (:func:`upsample.resize_ops.resize`, static sizes).
As in the transposed layer, everything runs channels-last inside (``data_format="channels_first"`` transposes the input
and output around it; the weights are the same in both layouts): on TensorFlow, Keras 3.15.1's add,
and so ``Conv2D``'s own bias, adds a ``(1, C, 1, 1)`` tensor along the *width* of an NCHW tensor whose
width equals ``C`` (measured; its bias-add shortcut tests the last axis first).

``depth_to_space`` reads DCR for ``channels_last`` on every backend (for ``channels_first``, DCR on
TensorFlow but CRD on JAX and torch: Keras 3.15.1, measured). The layer measures the order once per
scale (:func:`shuffle_order`) and folds it into the weight conversion: ``conv.kernel =
kernel[..., permutation]``, ``conv.bias = bias[permutation]`` with ``conv_geometry.shuffle_permutation``; no
channel is permuted per call. A non-square scale, which ``depth_to_space`` does not take, is the
canonical CRD reshape written out (no permutation). A projection residual is a bias-free 1x1 (x1)
``Conv{1,2,3}D`` named ``skip``.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

from upsample import conv_geometry, limits, phase_split, resize_ops, resize_table
from upsample.backends.keras import common
from upsample.backends.keras.transposed import PHASE_SPLIT_BACKENDS
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import load_spec, require_spec
from upsample.spec_kinds import dense_taps
from upsample.weights import Weights

__all__ = [
    "ResizeConv",
    "Subpixel",
    "build",
    "get_weights",
    "gather_resize",
    "resize_layer",
    "set_weights",
    "shuffle_crd",
    "shuffle_order",
]

Spec = SubpixelSpec | ResizeSpec


@functools.cache
def shuffle_order(data_format: str, block_size: int, channels: int) -> str:
    """``"CRD"`` or ``"DCR"``: the order ``keras.ops.depth_to_space`` reads on this backend, measured on an
    index tensor (it differs by backend for ``channels_first``)."""
    count = channels * block_size * block_size
    index = np.arange(count, dtype="float32")
    x = index.reshape(1, 1, 1, count) if data_format == "channels_last" else index.reshape(1, count, 1, 1)
    y = np.asarray(keras.ops.convert_to_numpy(keras.ops.depth_to_space(x, block_size, data_format=data_format)))
    read = y[0] if data_format == "channels_last" else y[0].transpose(1, 2, 0)  # (i, j, c) -> channel read
    scale = (block_size, block_size)
    for order in conv_geometry.SHUFFLE_ORDERS:
        if all(
            read[i, j, c] == conv_geometry.shuffle_channel(order, c, (i, j), channels, scale)
            for i in range(block_size)
            for j in range(block_size)
            for c in range(channels)
        ):
            return order
    raise RuntimeError(f"keras.ops.depth_to_space ({data_format}) reads neither CRD nor DCR order on this backend")


class _ConvKind(keras.layers.Layer):
    """What both kinds share: the ``conv``, the optional ``skip``, checks, residual and config."""

    def __init__(
        self,
        spec: Spec,
        *,
        weights: Weights | None = None,
        data_format: str | None = None,
        fast_path: bool = True,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__(**layer_kwargs)
        limits.check_weights(require_spec(spec, SubpixelSpec if isinstance(self, Subpixel) else ResizeSpec))
        data_format = common.data_format(data_format)
        self.spec = spec
        self.data_format = data_format
        self.fast_path = bool(fast_path)
        rank = spec.spatial_dims
        # Internally channels-last, as the transposed layer: on TensorFlow, Keras 3.15's add (and so
        # Conv2D's bias) adds a (1, C, 1, 1) tensor along the width of an NCHW tensor whose width is C
        # (its bias_add shortcut checks the last axis first), which channels-last never meets.
        shared: dict[str, Any] = {"dtype": self.dtype_policy, "data_format": "channels_last"}
        if weights is not None:  # skip drawing random values that are overwritten at once
            shared["kernel_initializer"] = "zeros"
        self.conv: Any = None  # a resize alone
        if spec.kernel_size is not None:
            self.conv = common.native("Conv{}D", rank)(
                spec.conv_channels,
                spec.kernel_size,
                padding="same",
                dilation_rate=spec.dilation,
                groups=spec.groups,
                use_bias=spec.use_bias,
                name="conv",
                **shared,
            )
        # a 1x1 (x1) kernel (1, 1, C_in, C_out) in either data format
        self.skip = (
            common.native("Conv{}D", rank)(spec.out_channels, 1, use_bias=False, name="skip", **shared)
            if spec.residual == "projection"
            else None
        )
        with keras.name_scope(self.name):
            for sublayer in (self.conv, self.skip):
                if sublayer is not None:
                    sublayer.build((None,) * (rank + 1) + (spec.in_channels,))
        self.built = True
        if weights is not None:
            set_weights(self, weights)

    @property
    def permutation(self) -> tuple[int, ...] | None:
        """Canonical -> native conv output channels (``None``: the native order is canonical)."""
        return None

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Exact output shape; the batch and spatial sizes may be ``None`` (unknown stays unknown)."""
        return common.output_shape(self, input_shape)

    def call(self, x: Any) -> Any:
        return common.channels_last_call(self, x, self._forward)

    def _forward(self, x: Any, size: tuple[int | None, ...]) -> Any:
        """The layer on channels-last ``x`` of spatial ``size`` (``None`` where known only at run time)."""
        y = self._upsample(x, size)
        return common.finish(self, x, y)

    def _upsample(self, x: Any, size: tuple[int | None, ...]) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(spec=self.spec.to_dict(), data_format=self.data_format, fast_path=self.fast_path)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return super().from_config({**config, "spec": load_spec(config["spec"])})


@keras.saving.register_keras_serializable(package="upsample")
class Subpixel(_ConvKind):
    """Sub-pixel convolution exactly as a :class:`~upsample.SubpixelSpec` describes.

    Args as :class:`upsample.backends.keras.Upsample`; ``fast_path`` computes a 1-pixel input as one matmul
    with the kernel's centre tap (the only one that reads it), then the shuffle.
    """

    @property
    def permutation(self) -> tuple[int, ...] | None:
        if not _depth_to_space(self.spec):
            return None
        order = shuffle_order("channels_last", self.spec.scale[0], self.spec.out_channels)
        return (
            None
            if order == "CRD"
            else conv_geometry.shuffle_permutation(order, self.spec.out_channels, self.spec.scale)
        )

    def _upsample(self, x: Any, size: tuple[int | None, ...]) -> Any:
        spec = self.spec
        if self.fast_path and dense_taps(spec) and all(n == 1 for n in size):
            centre = tuple(before for before, _ in spec.padding)
            z = keras.ops.matmul(keras.ops.reshape(x, (-1, spec.in_channels)), self.conv.kernel[centre])
            z = z if self.conv.bias is None else z + self.conv.bias
            z = keras.ops.reshape(z, (-1, *size, spec.conv_channels))
        else:
            z = self.conv(x)
        if _depth_to_space(spec):
            return keras.ops.depth_to_space(z, spec.scale[0], data_format="channels_last")
        if all(factor == 1 for factor in spec.scale):
            return z
        return shuffle_crd(z, size, spec.out_channels, spec.scale)


def _depth_to_space(spec: Spec) -> bool:
    """Whether the shuffle is ``keras.ops.depth_to_space``'s: a square 2-D scale above 1, ungrouped (the order it
    reads, folded into the weights, would move channels between groups)."""
    scale = spec.scale
    return len(scale) == 2 and scale[0] == scale[1] > 1 and spec.groups == 1


def shuffle_crd(z: Any, size: tuple[int | None, ...], channels: int, scale: tuple[int, ...]) -> Any:
    """The canonical (CRD) pixel shuffle of channels-last ``z`` over any number of axes: conv channel
    ``c * prod(r) + flat(i_1..i_d)`` to output channel ``c`` at sub-pixel ``(i_1..i_d)`` (MONAI's ``pixelshuffle``)."""
    rank = len(scale)
    sizes = [keras.ops.shape(z)[1 + a] if n is None else n for a, n in enumerate(size)]
    z = keras.ops.reshape(z, (-1, *sizes, channels, *scale))
    # (B, S_1..S_d, C, r_1..r_d) -> (B, S_1, r_1, ..., S_d, r_d, C)
    order = [0, *(axis for a in range(rank) for axis in (1 + a, rank + 2 + a)), rank + 1]
    z = keras.ops.transpose(z, order)
    return keras.ops.reshape(z, (-1, *(n * factor for n, factor in zip(sizes, scale, strict=True)), channels))


def gather_resize(x: Any, spec: ResizeSpec, size: tuple[int | None, ...]) -> Any:
    """Channels-last ``x`` resized as ``spec`` says by gathers and weighted sums (:func:`upsample.resize_ops.resize`),
    for the resizes Keras has no layer for; the spatial ``size`` must be static."""
    if None in size:
        raise ValueError(
            f"a {spec.method} resize with coordinates={spec.coordinates!r} needs static spatial sizes in Keras, got "
            f"size {size} (None: unknown); give the input's spatial sizes, e.g. keras.Input(shape) with all axes known"
        )
    return resize_ops.resize_as(
        spec,
        x,
        range(1, 1 + spec.spatial_dims),
        size,  # type: ignore[arg-type]
        lambda x, indices, axis: keras.ops.take(x, indices, axis=axis),
        lambda weights, x: keras.ops.cast(weights, x.dtype),
    )


@keras.saving.register_keras_serializable(package="upsample")
class ResizeConv(_ConvKind):
    """Resize-convolution exactly as a :class:`~upsample.ResizeSpec` describes (``UpSampling2D`` + ``Conv2D`` in
    2-D; see the module for 1-D and 3-D).

    With ``fast_path`` on the JAX backend a nearest resize runs as one transposed convolution of the summed
    kernel on the small input (:func:`upsample.geometry.nearest_resize_as_transposed`, :mod:`upsample.phase_split`):
    measured 0.07-0.71x of ``UpSampling2D`` + ``Conv2D`` forward and 0.28-0.54x forward + backward.
    """

    def __init__(self, spec: ResizeSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.resize = resize_layer(spec)
        if self.resize is not None:
            self.resize.build((None,) * (spec.spatial_dims + 2))  # no weights; built like the rest in __init__

    def _upsample(self, x: Any, size: tuple[int | None, ...]) -> Any:
        spec: ResizeSpec = self.spec  # type: ignore[assignment]  # a ResizeConv holds a ResizeSpec
        fast = self.fast_path and spec.repeats and None not in size
        fast = fast and dense_taps(spec) and self.conv is not None
        if fast and keras.backend.backend() in PHASE_SPLIT_BACKENDS:
            # nearest resize + conv as one transposed convolution on the small input (no resized copy)
            kernel = keras.ops.convert_to_tensor(self.conv.kernel)
            y = phase_split.nearest_resize_conv(keras.ops, x, kernel, spec.scale, spec.kernel_size)
            return y if self.conv.bias is None else y + self.conv.bias
        if self.resize is not None:
            x = self.resize(x)
        elif spec.integer_scale != (1,) * spec.spatial_dims:
            x = gather_resize(x, spec, size)
        return x if self.conv is None else self.conv(x)


def resize_layer(spec: ResizeSpec) -> Any:
    """Keras's own resize layer for ``spec`` (a row of :data:`upsample.resize_table.KERAS_UPSAMPLING`); ``None`` for a
    scale of 1 and for the resizes it does not compute (:func:`gather_resize`)."""
    rank = spec.spatial_dims
    native = resize_table.native_resize(resize_table.KERAS_UPSAMPLING, spec, keras.backend.backend())
    if spec.integer_scale == (1,) * rank or native is None:
        return None
    if rank == 2:
        return keras.layers.UpSampling2D(spec.scale, data_format="channels_last", name="resize", **dict(native.options))
    if rank == 1:
        return keras.layers.UpSampling1D(spec.scale[0], name="resize")
    return keras.layers.UpSampling3D(spec.scale, data_format="channels_last", name="resize")


Layer = Subpixel | ResizeConv


def build(spec: Spec, *, weights: Weights | None = None, **kwargs: Any) -> Layer:
    """The layer for ``spec`` (``Subpixel`` or ``ResizeConv``): the registry's entry point."""
    if isinstance(spec, SubpixelSpec):
        return Subpixel(spec, weights=weights, **kwargs)
    return ResizeConv(spec, weights=weights, **kwargs)


def _require_layer(layer: Any) -> Layer:
    if not isinstance(layer, (Subpixel, ResizeConv)):
        raise TypeError(f"layer must be an upsample.backends.keras Subpixel or ResizeConv, got {type(layer).__name__}")
    return layer


def get_weights(layer: Layer) -> Weights:
    """The layer's weights in the canonical layout (kernel ``(*k, C_in, C_conv)`` in CRD order)."""
    layer = _require_layer(layer)
    if layer.conv is None:  # a resize alone
        return Weights(None)
    kernel = common.to_numpy(layer.conv.kernel)
    bias = None if layer.conv.bias is None else common.to_numpy(layer.conv.bias)
    permutation = layer.permutation
    if permutation is not None:
        inverse = list(conv_geometry.inverse_permutation(permutation))
        kernel, bias = kernel[..., inverse], None if bias is None else bias[inverse]
    return Weights(kernel, bias, None if layer.skip is None else common.skip_kernel(layer.skip))


def set_weights(layer: Layer, weights: Weights) -> None:
    """Assign canonical ``weights`` (the shuffle order folded in once, here)."""
    layer = _require_layer(layer)
    weights.check(layer.spec)  # type: ignore[arg-type]
    if layer.conv is None:  # a resize alone: nothing to assign
        return
    kernel, bias = np.asarray(weights.kernel), weights.bias
    permutation = layer.permutation
    if permutation is not None:
        kernel, bias = kernel[..., list(permutation)], None if bias is None else np.asarray(bias)[list(permutation)]
    layer.conv.kernel.assign(kernel)
    if layer.conv.bias is not None:
        layer.conv.bias.assign(np.asarray(bias))
    if layer.skip is not None:
        common.set_skip_kernel(layer.skip, weights.skip)
