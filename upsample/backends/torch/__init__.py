"""PyTorch layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``from_native`` pick the kind's module from the spec, layer or native module (the kinds
table: :func:`upsample.backends.kind_module`). Every layer has any spatial rank (1, 2 or 3) its spec has."""

from __future__ import annotations

from typing import Any

from torch import nn

from upsample.backends import kind_module
from upsample.backends.torch import blocks
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


def from_native(module: Any, *, in_channels: int | None = None, spatial_dims: int | None = None) -> tuple[Any, Any]:
    """Spec and canonical weights of any upsampling block torch users have (the table
    :data:`upsample.backends.torch.blocks.BLOCKS`): ``nn.ConvTranspose1d/2d/3d``, a bare ``nn.Upsample`` given
    ``in_channels`` (and ``spatial_dims`` where its factor does not say), MONAI's ``UpSample`` (every mode) and
    ``SubpixelUpsample``, diffusers' ``Upsample1D``, ``Upsample2D`` and ``FirUpsample2D``, upsample's own layers, and
    ``nn.Sequential`` kind patterns (``Conv2d`` + ``PixelShuffle``, ``Upsample`` + ``Conv``) and heads (fastai's
    ``PixelShuffle_ICNR``, the DCGAN generator), returned as ``(HeadSpec, HeadWeights)`` where they are several
    stages. Weight- and spectral-normalised convolutions are read by the weight they compute with (the normalisation
    itself is not carried over)."""
    return blocks.from_native(module, in_channels, spatial_dims)
