"""Keras 3 layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``from_native`` pick the kind's module from the spec or layer. Importing this
package registers the layers with Keras, so saved ``.keras`` models load back."""

from __future__ import annotations

from typing import Any

import keras

from upsample.backends.keras import conv, transposed
from upsample.backends.keras.conv import ResizeConv, Subpixel
from upsample.backends.keras.transposed import Upsample
from upsample.conv_specs import CONV_SPEC_TYPES
from upsample.head import HeadSpec
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "Upsample", "build", "from_native", "get_weights", "set_weights"]


def _heads() -> Any:
    """The heads module, imported on use: it imports this package."""
    from upsample.backends.keras import head

    return head


def build(spec: Any, *, weights: Weights | None = None, **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (a ``HeadSpec``: its head): the registry's entry point."""
    if isinstance(spec, HeadSpec):
        return _heads().build(spec, weights=weights, **kwargs)
    kind = conv if isinstance(spec, CONV_SPEC_TYPES) else transposed
    return kind.build(spec, weights=weights, **kwargs)


def get_weights(layer: Any) -> Weights:
    """The layer's weights in the canonical layout of its kind (a head's: ``HeadWeights``)."""
    if isinstance(layer, _heads().Head):
        return _heads().get_weights(layer)
    return (conv if isinstance(layer, (Subpixel, ResizeConv)) else transposed).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> None:
    """Assign canonical ``weights`` to a layer of any kind."""
    if isinstance(layer, _heads().Head):
        _heads().set_weights(layer, weights)
        return
    (conv if isinstance(layer, (Subpixel, ResizeConv)) else transposed).set_weights(layer, weights)


def from_native(layer: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Spec and canonical weights of a ``Conv2DTranspose`` (transposed), of a ``Conv2D`` with ``scale=`` (and
    ``method=`` for a resize-convolution: see :func:`upsample.backends.keras.conv.from_native`), or of a
    ``keras.Sequential`` / list of layers: a head, returned as ``(HeadSpec, HeadWeights)`` (see
    :func:`upsample.backends.keras.head.from_native`)."""
    if "scale" in kwargs:
        return conv.from_native(layer, **kwargs)
    if isinstance(layer, (list, tuple)) or isinstance(layer, keras.Sequential):
        return _heads().from_native(layer)
    return transposed.from_native(layer)
