"""Keras 3 layers for the sub-pixel and resize kinds, on every Keras backend and both data formats.

Each layer holds a real stride-1 ``keras.layers.Conv2D(padding="same")`` named ``conv`` (Keras's
"same" is the spec's: ``(k - 1) // 2`` before, the rest after), then ``keras.ops.depth_to_space``
(:class:`Subpixel`, square scales) or ``keras.layers.UpSampling2D`` (:class:`ResizeConv`,
``interpolation="nearest" | "bilinear"``, half-pixel for integer factors). As in the transposed
layer, everything runs channels-last inside (``data_format="channels_first"`` transposes the input
and output around it; the weights are the same in both layouts): on TensorFlow, Keras 3.15.1's add,
and so ``Conv2D``'s own bias, adds a ``(1, C, 1, 1)`` tensor along the *width* of an NCHW tensor whose
width equals ``C`` (measured; its bias-add shortcut tests the last axis first).

``depth_to_space`` reads DCR for ``channels_last`` on every backend (for ``channels_first``, DCR on
TensorFlow but CRD on JAX and torch: Keras 3.15.1, measured). The layer measures the order once per
scale (:func:`shuffle_order`) and folds it into the weight conversion: ``conv.kernel =
kernel[..., permutation]``, ``conv.bias = bias[permutation]`` with ``conv_geometry.shuffle_permutation``; no
channel is permuted per call. A non-square scale, which ``depth_to_space`` does not take, is the
canonical CRD reshape written out (no permutation). A projection residual is a bias-free 1x1
``Conv2D`` named ``skip``.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

from upsample import conv_geometry, limits, phase_split
from upsample.backends.keras import common
from upsample.backends.keras.transposed import PHASE_SPLIT_BACKENDS
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import load_spec, require_spec
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "build", "from_native", "get_weights", "set_weights", "shuffle_order"]

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
        self._layout = common.layout(data_format)
        # Internally channels-last, as the transposed layer: on TensorFlow, Keras 3.15's add (and so
        # Conv2D's bias) adds a (1, C, 1, 1) tensor along the width of an NCHW tensor whose width is C
        # (its bias_add shortcut checks the last axis first), which channels-last never meets.
        shared: dict[str, Any] = {"dtype": self.dtype_policy, "data_format": "channels_last"}
        if weights is not None:  # skip drawing random values that are overwritten at once
            shared["kernel_initializer"] = "zeros"
        self.conv = keras.layers.Conv2D(
            spec.conv_channels,
            spec.kernel_size,
            padding="same",
            use_bias=spec.use_bias,
            name="conv",
            **shared,
        )
        # a 1x1 kernel (1, 1, C_in, C_out) in either data format
        self.skip = (
            keras.layers.Conv2D(spec.out_channels, 1, use_bias=False, name="skip", **shared)
            if spec.residual == "projection"
            else None
        )
        with keras.name_scope(self.name):
            for sublayer in (self.conv, self.skip):
                if sublayer is not None:
                    sublayer.build((None, None, None, spec.in_channels))
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
        size = common.checked_size(self, x)
        if self._layout == "NCHW":
            return keras.ops.transpose(self._forward(keras.ops.transpose(x, (0, 2, 3, 1)), size), (0, 3, 1, 2))
        return self._forward(x, size)

    def _forward(self, x: Any, size: tuple[int, int]) -> Any:
        """The layer on NHWC ``x`` of spatial ``size``."""
        y = self._upsample(x, size)
        return y if self.spec.residual is None else y + common.residual(x, self.skip, y)

    def _upsample(self, x: Any, size: tuple[int, int]) -> Any:
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

    Args as :class:`upsample.backends.keras.Upsample`; ``fast_path`` computes a 1x1 input as one matmul
    with the kernel's centre tap (the only one that reads it), then the shuffle.
    """

    @property
    def permutation(self) -> tuple[int, ...] | None:
        scale_h, scale_w = self.spec.scale
        if scale_h != scale_w or scale_h == 1:
            return None
        order = shuffle_order("channels_last", scale_h, self.spec.out_channels)
        return (
            None
            if order == "CRD"
            else conv_geometry.shuffle_permutation(order, self.spec.out_channels, self.spec.scale)
        )

    def _upsample(self, x: Any, size: tuple[int, int]) -> Any:
        spec = self.spec
        if self.fast_path and size == (1, 1):
            (top, _), (left, _) = spec.padding
            z = keras.ops.matmul(keras.ops.reshape(x, (-1, spec.in_channels)), self.conv.kernel[top, left])
            z = z if self.conv.bias is None else z + self.conv.bias
            z = keras.ops.reshape(z, (-1, 1, 1, spec.conv_channels))
        else:
            z = self.conv(x)
        scale_h, scale_w = spec.scale
        if scale_h == scale_w > 1:
            return keras.ops.depth_to_space(z, scale_h, data_format="channels_last")
        if (scale_h, scale_w) == (1, 1):
            return z
        height, width, channels = size[0], size[1], spec.out_channels  # the CRD reshape, for r_h != r_w
        z = keras.ops.reshape(z, (-1, height, width, channels, scale_h, scale_w))
        z = keras.ops.transpose(z, (0, 1, 4, 2, 5, 3))
        return keras.ops.reshape(z, (-1, height * scale_h, width * scale_w, channels))


@keras.saving.register_keras_serializable(package="upsample")
class ResizeConv(_ConvKind):
    """Resize-convolution exactly as a :class:`~upsample.ResizeSpec` describes (``UpSampling2D`` + ``Conv2D``).

    With ``fast_path`` on the JAX backend a nearest resize runs as one transposed convolution of the summed
    kernel on the small input (:func:`upsample.geometry.nearest_resize_as_transposed`, :mod:`upsample.phase_split`):
    measured 0.07-0.71x of ``UpSampling2D`` + ``Conv2D`` forward and 0.28-0.54x forward + backward.
    """

    def __init__(self, spec: ResizeSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.resize = (
            keras.layers.UpSampling2D(spec.scale, data_format="channels_last", interpolation=spec.method, name="resize")
            if isinstance(spec, ResizeSpec) and spec.scale != (1, 1)
            else None
        )
        if self.resize is not None:
            self.resize.build((None, None, None, None))  # no weights; built like the rest in __init__

    def _upsample(self, x: Any, size: tuple[int, int]) -> Any:
        spec = self.spec
        fast = self.fast_path and isinstance(spec, ResizeSpec) and spec.method == "nearest" and None not in size
        if fast and keras.backend.backend() in PHASE_SPLIT_BACKENDS:
            # nearest resize + conv as one transposed convolution on the small input (no resized copy)
            kernel = keras.ops.convert_to_tensor(self.conv.kernel)
            y = phase_split.nearest_resize_conv(keras.ops, x, kernel, spec.scale, spec.kernel_size)
            return y if self.conv.bias is None else y + self.conv.bias
        return self.conv(x if self.resize is None else self.resize(x))


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
    """The layer's weights in the canonical layout (kernel HWIO ``(kh, kw, C_in, C_conv)`` in CRD order)."""
    layer = _require_layer(layer)
    kernel = common.to_numpy(layer.conv.kernel)
    bias = None if layer.conv.bias is None else common.to_numpy(layer.conv.bias)
    permutation = layer.permutation
    if permutation is not None:
        inverse = list(conv_geometry.inverse_permutation(permutation))
        kernel, bias = kernel[..., inverse], None if bias is None else bias[inverse]
    return Weights(kernel, bias, None if layer.skip is None else common.to_numpy(layer.skip.kernel)[0, 0])


def set_weights(layer: Layer, weights: Weights) -> None:
    """Assign canonical ``weights`` (the shuffle order folded in once, here)."""
    layer = _require_layer(layer)
    weights.check(layer.spec)  # type: ignore[arg-type]
    kernel, bias = np.asarray(weights.kernel), weights.bias
    permutation = layer.permutation
    if permutation is not None:
        kernel, bias = kernel[..., list(permutation)], None if bias is None else np.asarray(bias)[list(permutation)]
    layer.conv.kernel.assign(kernel)
    if layer.conv.bias is not None:
        layer.conv.bias.assign(np.asarray(bias))
    if layer.skip is not None:
        layer.skip.kernel.assign(np.asarray(weights.skip)[None, None])


def from_native(
    conv: keras.layers.Conv2D, *, scale: int | tuple[int, int], method: str | None = None
) -> tuple[Spec, Weights]:
    """The spec and canonical weights of a built stride-1 ``Conv2D(padding="same")`` followed by
    ``keras.ops.depth_to_space(y, scale, data_format=conv.data_format)`` on this backend (``method=None``),
    or preceded by ``UpSampling2D(scale, interpolation=method)``.

    ``build(spec, weights=weights, data_format=conv.data_format)`` then gives the same outputs. The
    shuffle order that ``depth_to_space`` uses here is undone in the weights (:func:`shuffle_order`).
    """
    if not isinstance(conv, keras.layers.Conv2D):
        raise TypeError(f"conv must be a keras.layers.Conv2D, got {type(conv).__name__}")
    if not conv.built:
        raise ValueError(f"conv {conv.name!r} is not built and has no weights yet; call it on an input first")
    refused = {
        "strides": (tuple(conv.strides), (1, 1)),
        "padding": (conv.padding, "same"),
        "dilation_rate": (tuple(conv.dilation_rate), (1, 1)),
        "groups": (conv.groups, 1),
        "activation": (keras.activations.serialize(conv.activation), "linear"),
    }
    for name, (value, needed) in refused.items():
        if value != needed:
            raise ValueError(f"conv.{name} must be {needed!r} to convert to a spec, got {value!r}")
    kernel = common.to_numpy(conv.kernel)
    bias = common.to_numpy(conv.bias) if conv.use_bias else None
    kernel_size = (int(kernel.shape[0]), int(kernel.shape[1]))
    spec: Spec
    if method is None:
        blocks = scale if isinstance(scale, int) else scale[0]
        if not isinstance(scale, int) and scale[0] != scale[1]:
            raise ValueError(f"scale must be one int for depth_to_space, got {scale!r}")
        spec = SubpixelSpec(kernel.shape[2], conv.filters // blocks**2, blocks, kernel_size, use_bias=conv.use_bias)
        order = "CRD" if blocks == 1 else shuffle_order(conv.data_format, blocks, spec.out_channels)
        inverse = list(
            conv_geometry.inverse_permutation(conv_geometry.shuffle_permutation(order, spec.out_channels, spec.scale))
        )
        kernel, bias = kernel[..., inverse], None if bias is None else bias[inverse]
    else:
        spec = ResizeSpec(kernel.shape[2], conv.filters, scale, method, kernel_size, use_bias=conv.use_bias)
    return spec, Weights(kernel, bias).check(spec)  # type: ignore[arg-type]
