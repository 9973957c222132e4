"""PyTorch layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``from_native`` pick the kind's module from the spec, layer or native module (the kinds
table: :func:`upsample.backends.kind_module`). Every layer has any spatial rank (1, 2 or 3) its spec has."""

from __future__ import annotations

from typing import Any

from torch import nn

from upsample.backends import kind_module
from upsample.backends.torch import common, conv_native, transposed
from upsample.backends.torch.conv import ResizeConv, Subpixel
from upsample.backends.torch.transposed import Upsample
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "Upsample", "build", "from_native", "get_weights", "set_weights"]


def build(spec: Any, *, weights: Weights | None = None, **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (a ``HeadSpec``: its head): the registry's entry point."""
    return kind_module(__name__, spec).build(spec, weights=weights, **kwargs)


def _spec_of(layer: Any) -> Any:
    spec = getattr(layer, "spec", None)
    if spec is None or not isinstance(layer, nn.Module):
        raise TypeError(
            "layer must be an upsample.backends.torch.Upsample, Subpixel, ResizeConv or head.Head, "
            f"got {type(layer).__name__}"
        )
    return spec


def get_weights(layer: Any) -> Any:
    """The layer's parameters in the canonical layout of its kind (a head's: ``HeadWeights``)."""
    return kind_module(__name__, _spec_of(layer)).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> None:
    """Copy canonical ``weights`` into a layer of any kind."""
    kind_module(__name__, _spec_of(layer)).set_weights(layer, weights)


def from_native(module: Any, *, in_channels: int | None = None) -> tuple[Any, Any]:
    """Spec and canonical weights of ``nn.ConvTranspose1d/2d/3d`` (transposed), a two-module kind pattern
    ``nn.Sequential(Conv2d, PixelShuffle)`` / ``nn.Sequential(Upsample, Conv1d/2d/3d)`` (see
    :func:`upsample.backends.torch.conv_native.from_native`; any two modules without a transposed convolution or a
    nested ``nn.Sequential`` are read as one), a bare ``nn.Upsample`` with ``in_channels`` (a resize alone:
    :func:`upsample.backends.torch.conv_native.upsample_alone`), or any other ``nn.Sequential``: a head, returned as
    ``(HeadSpec, HeadWeights)`` (see :func:`upsample.backends.torch.head.from_native`)."""
    if isinstance(module, nn.Upsample):
        return conv_native.upsample_alone(module, in_channels)
    if isinstance(module, nn.Sequential):
        kinds = (*common.TRANSPOSED.values(), nn.Sequential)
        pattern = len(module) == 2 and not any(isinstance(child, kinds) for child in module)
        if pattern:
            return conv_native.from_native(module)
        from upsample.backends.torch import head  # imported on use: it imports this package

        return head.from_native(module)
    if not isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):  # Lazy* too
        raise TypeError(
            f"module must be an nn.ConvTranspose1d/2d/3d or an nn.Sequential (a kind pattern or a head), "
            f"got {type(module).__name__}"
        )
    return transposed.from_native(module)
