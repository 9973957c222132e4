"""Reading a Keras user's layers as a sub-pixel or resize spec (``from_native``): a ``Conv{1,2,3}D`` with the
shuffle or resize around it, and a bare ``UpSampling{1,2,3}D`` or ``Resizing`` (a resize alone). The layers
themselves are :mod:`upsample.backends.keras.conv`'s."""

from __future__ import annotations

import math
from typing import Any

import keras

from upsample import conv_geometry, resize_table
from upsample.arguments import as_axes
from upsample.backends.keras import common
from upsample.backends.keras.conv import Spec, shuffle_order
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.messages import shown
from upsample.weights import Weights

__all__ = ["NATIVE", "RESIZE_LAYERS", "from_native", "resize_alone"]

NATIVE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
"""The Keras layers :func:`from_native` reads, one per spatial rank."""


def from_native(
    conv: Any,
    *,
    scale: int | tuple[int, ...] | None = None,
    method: str | None = None,
    size: int | tuple[int, ...] | None = None,
) -> tuple[Spec, Weights]:
    """The spec and canonical weights of a built stride-1 ``Conv{1,2,3}D(padding="same")`` followed by a pixel
    shuffle (``method=None``): in 2-D ``keras.ops.depth_to_space(y, scale, data_format=conv.data_format)`` on
    this backend, in 1-D and 3-D (where Keras has none) the canonical CRD shuffle; or preceded by
    ``UpSampling{1,2,3}D(scale)`` (``method="nearest"``, or ``"bilinear"`` as ``UpSampling2D``'s
    ``interpolation`` and the half-pixel linear resize in 1-D and 3-D); or, with ``size`` instead of ``scale``,
    preceded by ``keras.layers.Resizing(*size, interpolation=method)`` or ``keras.ops.image.resize(x, size,
    interpolation=method)`` (2-D; :data:`upsample.resize_table.KERAS_IMAGE_RESIZE`).

    ``build(spec, weights=weights, data_format=conv.data_format)`` then gives the same outputs. The
    shuffle order that ``depth_to_space`` uses here is undone in the weights (:func:`shuffle_order`).
    """
    if not isinstance(conv, NATIVE):
        raise TypeError(f"conv must be a keras.layers.Conv1D, Conv2D or Conv3D, got {type(conv).__name__}")
    if not conv.built:
        raise ValueError(f"conv {conv.name!r} is not built and has no weights yet; call it on an input first")
    rank = len(conv.kernel_size)
    refused = {
        "strides": (tuple(conv.strides), (1,) * rank),
        "padding": (conv.padding, "same"),
        "activation": (keras.activations.serialize(conv.activation), "linear"),
    }
    for name, (value, needed) in refused.items():
        if value != needed:
            raise ValueError(f"conv.{name} must be {needed!r} to convert to a spec, got {value!r}")
    kernel = common.to_numpy(conv.kernel)
    bias = common.to_numpy(conv.bias) if conv.use_bias else None
    kernel_size = tuple(int(n) for n in kernel.shape[:rank])
    in_channels = int(kernel.shape[-2]) * conv.groups
    grouping: dict[str, Any] = {"groups": conv.groups, "dilation": tuple(conv.dilation_rate)}
    spec: Spec
    if size is not None:
        settings = _image_resize_settings(method, rank, scale)
        spec = ResizeSpec(
            in_channels, conv.filters, size=size, kernel_size=kernel_size, use_bias=conv.use_bias, spatial_dims=rank,
            **grouping, **settings,
        )  # fmt: skip
        return spec, Weights(kernel, bias).check(spec)  # type: ignore[arg-type]
    if scale is None:
        raise TypeError("from_native(conv, scale=...) needs the scale (or size= for keras.layers.Resizing)")
    if method is None and rank == 2:
        blocks = scale if isinstance(scale, int) else scale[0]
        if not isinstance(scale, int) and scale[0] != scale[1]:
            raise ValueError(f"scale must be one int for depth_to_space, got {scale!r}")
        spec = SubpixelSpec(
            in_channels, conv.filters // blocks**2, blocks, kernel_size, use_bias=conv.use_bias, **grouping
        )
        order = "CRD" if blocks == 1 else shuffle_order(conv.data_format, blocks, spec.out_channels)
        if order != "CRD" and conv.groups != 1:
            raise ValueError(
                f"conv.groups must be 1 before depth_to_space, which reads {order} order on this backend: that order "
                f"moves channels between groups, which no grouped spec holds; got groups={conv.groups}"
            )
        inverse = list(
            conv_geometry.inverse_permutation(conv_geometry.shuffle_permutation(order, spec.out_channels, spec.scale))
        )
        kernel, bias = kernel[..., inverse], None if bias is None else bias[inverse]
    elif method is None:
        factors = as_axes("scale", scale, rank, 1)
        spec = SubpixelSpec(
            in_channels, conv.filters // math.prod(factors), factors, kernel_size, use_bias=conv.use_bias, **grouping
        )
    else:
        settings = _upsampling_settings(method, rank)
        spec = ResizeSpec(
            in_channels, conv.filters, scale, kernel_size=kernel_size, use_bias=conv.use_bias, spatial_dims=rank,
            **grouping, **settings,
        )  # fmt: skip
    return spec, Weights(kernel, bias).check(spec)  # type: ignore[arg-type]


RESIZE_LAYERS = (keras.layers.UpSampling1D, keras.layers.UpSampling2D, keras.layers.UpSampling3D, keras.layers.Resizing)
"""The Keras layers :func:`resize_alone` reads: a resize with no convolution."""


def resize_alone(layer: Any, in_channels: int | None) -> tuple[ResizeSpec, Weights]:
    """The spec of a bare ``UpSampling{1,2,3}D`` or ``Resizing`` layer, a resize with no convolution
    (``kernel_size=None``), and its (absent) weights. The layer takes any channel count, a spec one:
    ``in_channels`` says which."""
    if in_channels is None:
        raise TypeError(
            f"from_native({type(layer).__name__}, in_channels=C): the layer takes any channel count and a spec needs "
            f"one; got no in_channels"
        )
    if isinstance(layer, keras.layers.Resizing):
        refused = {"crop_to_aspect_ratio": layer.crop_to_aspect_ratio, "pad_to_aspect_ratio": layer.pad_to_aspect_ratio}
        refused["antialias"] = layer.antialias
        for name, value in refused.items():
            if value:
                raise ValueError(f"Resizing.{name} must be False to convert to a spec, got {value!r}")
        size = (layer.height, layer.width)
        settings = _image_resize_settings(layer.interpolation, 2, None)
        return ResizeSpec(in_channels, size=size, kernel_size=None, **settings), Weights(None)
    rank = RESIZE_LAYERS.index(type(layer)) + 1
    factor = layer.size
    interpolation = getattr(layer, "interpolation", "nearest")
    settings = _upsampling_settings(interpolation, rank)
    spec = ResizeSpec(in_channels, scale=factor, kernel_size=None, spatial_dims=rank, **settings)
    return spec, Weights(None)


def _image_resize_settings(interpolation: str | None, rank: int, scale: Any) -> dict[str, Any]:
    """The spec settings of ``keras.ops.image.resize(interpolation=interpolation)`` to a size on this backend."""
    backend = keras.backend.backend()
    rows = resize_table.KERAS_IMAGE_RESIZE
    row = None if interpolation is None else resize_table.keras_row(interpolation, rank, backend, rows)
    if scale is not None or row is None:
        names = sorted({str(dict(r.options)["interpolation"]) for r in rows if not r.backends or backend in r.backends})
        raise ValueError(
            f"size= reads keras.layers.Resizing / keras.ops.image.resize (2-D) with method one of {names} on the "
            f"{backend} backend, and no scale; got method={shown(interpolation)}, scale={shown(scale)} on a "
            f"{rank}-D Conv"
        )
    return resize_table.spec_settings(row.interpolation, integer_scale=False)


def _upsampling_settings(interpolation: str, rank: int) -> dict[str, Any]:
    """The spec settings of ``UpSampling{rank}D(interpolation=interpolation)`` on this backend
    (:data:`upsample.resize_table.KERAS_UPSAMPLING`); any other name is a spec ``method`` (half-pixel)."""
    backend = keras.backend.backend()
    row = resize_table.keras_row(interpolation, rank, backend)
    if row is not None:
        return resize_table.spec_settings(row.interpolation)
    if interpolation == "bicubic" and rank == 2:
        raise ValueError(
            f"UpSampling2D(interpolation='bicubic') on the {backend} backend has no spec: it computes Keys' cubic "
            f"(a = -0.5) with weights from a 1024-step table, no exact setting (docs/resize.md)"
        )
    return {"method": interpolation}
