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
from upsample.stack import StackSpec
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "Upsample", "build", "from_native", "get_weights", "set_weights"]


def _heads() -> Any:
    """The heads module, imported on use: it imports this package."""
    from upsample.backends.torch import stack

    return stack


def build(spec: Any, *, weights: Weights | None = None, **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (a ``StackSpec``: its head): the registry's entry point."""
    if isinstance(spec, StackSpec):
        return _heads().build(spec, weights=weights, **kwargs)
    kind = conv if isinstance(spec, CONV_SPEC_TYPES) else transposed
    return kind.build(spec, weights=weights, **kwargs)


def get_weights(layer: Any) -> Weights:
    """The layer's parameters in the canonical layout of its kind (a head's: ``StackWeights``)."""
    if isinstance(layer, _heads().Head):
        return _heads().get_weights(layer)
    return (conv if isinstance(layer, (Subpixel, ResizeConv)) else transposed).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> None:
    """Copy canonical ``weights`` into a layer of any kind."""
    if isinstance(layer, _heads().Head):
        _heads().set_weights(layer, weights)
        return
    (conv if isinstance(layer, (Subpixel, ResizeConv)) else transposed).set_weights(layer, weights)


def from_native(module: Any) -> tuple[Any, Weights]:
    """Spec and canonical weights of ``nn.ConvTranspose2d`` (transposed) or an ``nn.Sequential`` pattern
    (sub-pixel, resize: see :func:`upsample.backends.torch.conv.from_native`)."""
    return (conv if isinstance(module, nn.Sequential) else transposed).from_native(module)
