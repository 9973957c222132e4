"""Keras 3 layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``from_native`` pick the kind's module from the spec or layer. Importing this
package registers the layers with Keras, so saved ``.keras`` models load back. Every layer has any spatial rank
(1, 2 or 3) its spec has."""

from __future__ import annotations

from typing import Any

import keras

from upsample.backends import kind_module, own_layer
from upsample.backends.keras import conv_native, transposed
from upsample.backends.keras.conv import ResizeConv, Subpixel
from upsample.backends.keras.transposed import Upsample

__all__ = ["ResizeConv", "Subpixel", "Upsample", "build", "from_native", "get_weights", "set_weights"]


def build(spec: Any, *, weights: Any = None, **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (a ``HeadSpec``: its head): the registry's entry point."""
    return kind_module(__name__, spec).build(spec, weights=weights, **kwargs)


def _spec_of(layer: Any) -> Any:
    spec = getattr(layer, "spec", None)
    if spec is None:
        raise TypeError(
            "layer must be an upsample.backends.keras.Upsample, Subpixel, ResizeConv or head.Head, "
            f"got {type(layer).__name__}"
        )
    return spec


def get_weights(layer: Any) -> Any:
    """The layer's weights in the canonical layout of its kind (a head's: ``HeadWeights``)."""
    return kind_module(__name__, _spec_of(layer)).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> None:
    """Assign canonical ``weights`` to a layer of any kind."""
    kind_module(__name__, _spec_of(layer)).set_weights(layer, weights)


def from_native(layer: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Spec and canonical weights of a ``Conv{1,2,3}DTranspose`` (transposed), of a ``Conv{1,2,3}D`` with
    ``scale=`` or ``size=`` (and ``method=`` for a resize-convolution: see
    :func:`upsample.backends.keras.conv_native.from_native`), of a bare ``UpSampling{1,2,3}D`` or ``Resizing`` with
    ``in_channels=`` (a resize alone: :func:`upsample.backends.keras.conv_native.resize_alone`), of one of upsample's
    own layers, or of a ``keras.Sequential``, a functional model whose layers form one chain, or a list of layers: a
    head, returned as ``(HeadSpec, HeadWeights)`` where it is several stages (see
    :func:`upsample.backends.keras.head.from_native`; one stage alone is returned as that stage)."""
    if isinstance(layer, conv_native.RESIZE_LAYERS):
        return conv_native.resize_alone(layer, **kwargs)
    if "scale" in kwargs or "size" in kwargs:
        return conv_native.from_native(layer, **kwargs)
    if own_layer(layer):
        return layer.spec, get_weights(layer)  # one of upsample's own layers or heads
    if isinstance(layer, (list, tuple, keras.Model)):
        from upsample.backends.keras import head  # imported on use: it imports this package

        spec, weights = head.from_native(layer)
        if len(spec.stages) == 1 and spec.final_activation is None:  # one stage: that stage, as torch returns it
            return spec.stages[0], weights.stages[0]
        return spec, weights
    return transposed.from_native(layer)
