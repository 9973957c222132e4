"""PyTorch layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``from_native`` pick the kind's module from the spec, layer or native module."""

from __future__ import annotations

from typing import Any

from torch import nn

from upsample.backends.torch import conv, transposed
from upsample.backends.torch.conv import ResizeConv, Subpixel
from upsample.backends.torch.transposed import Upsample
from upsample.conv_specs import CONV_SPEC_TYPES
from upsample.head import HeadSpec
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "Upsample", "build", "from_native", "get_weights", "set_weights"]


def _heads() -> Any:
    """The heads module, imported on use: it imports this package."""
    from upsample.backends.torch import head

    return head


def build(spec: Any, *, weights: Weights | None = None, **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (a ``HeadSpec``: its head): the registry's entry point."""
    if isinstance(spec, HeadSpec):
        return _heads().build(spec, weights=weights, **kwargs)
    kind = conv if isinstance(spec, CONV_SPEC_TYPES) else transposed
    return kind.build(spec, weights=weights, **kwargs)


def get_weights(layer: Any) -> Weights:
    """The layer's parameters in the canonical layout of its kind (a head's: ``HeadWeights``)."""
    if isinstance(layer, _heads().Head):
        return _heads().get_weights(layer)
    return (conv if isinstance(layer, (Subpixel, ResizeConv)) else transposed).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> None:
    """Copy canonical ``weights`` into a layer of any kind."""
    if isinstance(layer, _heads().Head):
        _heads().set_weights(layer, weights)
        return
    (conv if isinstance(layer, (Subpixel, ResizeConv)) else transposed).set_weights(layer, weights)


def from_native(module: Any) -> tuple[Any, Any]:
    """Spec and canonical weights of ``nn.ConvTranspose2d`` (transposed), a two-module kind pattern
    ``nn.Sequential(Conv2d, PixelShuffle)`` / ``nn.Sequential(Upsample, Conv2d)`` (see
    :func:`upsample.backends.torch.conv.from_native`; any two modules without a ``ConvTranspose2d`` or a
    nested ``nn.Sequential`` are read as one), or any other ``nn.Sequential``: a head, returned as
    ``(HeadSpec, HeadWeights)`` (see :func:`upsample.backends.torch.head.from_native`)."""
    if isinstance(module, nn.Sequential):
        kinds = (nn.ConvTranspose2d, nn.Sequential)
        pattern = len(module) == 2 and not any(isinstance(child, kinds) for child in module)
        return conv.from_native(module) if pattern else _heads().from_native(module)
    return transposed.from_native(module)
