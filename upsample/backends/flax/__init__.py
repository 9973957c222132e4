"""Flax (linen and NNX) layers for every spec kind, one module per kind; the names below are the adapter's
interface (the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``to_variables`` pick the kind's module from the spec or layer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

from upsample.backends.flax import conv, transposed
from upsample.backends.flax.conv import ResizeConv, ResizeConvNNX, Subpixel, SubpixelNNX
from upsample.backends.flax.transposed import Upsample, UpsampleNNX
from upsample.conv_specs import CONV_SPEC_TYPES
from upsample.head import HeadSpec
from upsample.weights import Weights

__all__ = [
    "ResizeConv",
    "ResizeConvNNX",
    "Subpixel",
    "SubpixelNNX",
    "Upsample",
    "UpsampleNNX",
    "build",
    "from_native",
    "get_weights",
    "set_weights",
    "to_variables",
]

_CONV_LAYERS = (*conv.LINEN, *conv.NNX)


def _is_conv_layer(layer: Any) -> bool:
    module = layer[0] if isinstance(layer, tuple) else layer
    return isinstance(module, _CONV_LAYERS)


def _heads() -> Any:
    """The heads module, imported on use: it imports this package."""
    from upsample.backends.flax import head

    return head


def _is_head(layer: Any) -> bool:
    module = layer[0] if isinstance(layer, tuple) else layer
    return isinstance(module, (_heads().Head, _heads().HeadNNX))


def build(spec: Any, *, weights: Weights | None = None, api: str = "linen", **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (``api="linen" | "nnx"``; a ``HeadSpec``: its head): the registry's
    entry point."""
    if isinstance(spec, HeadSpec):
        return _heads().build(spec, weights=weights, api=api, **kwargs)
    kind = conv if isinstance(spec, CONV_SPEC_TYPES) else transposed
    return kind.build(spec, weights=weights, api=api, **kwargs)


def get_weights(layer: Any) -> Weights:
    """Canonical weights of a layer of any kind (NNX, bound linen, or ``(module, variables)``; a head's:
    ``HeadWeights``)."""
    if _is_head(layer):
        return _heads().get_weights(layer)
    return (conv if _is_conv_layer(layer) else transposed).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> Any:
    """Put canonical ``weights`` into a layer of any kind and return it."""
    if _is_head(layer):
        return _heads().set_weights(layer, weights)
    return (conv if _is_conv_layer(layer) else transposed).set_weights(layer, weights)


def to_variables(spec: Any, weights: Weights, param_dtype: Any = jnp.float32) -> dict[str, Any]:
    """Canonical ``weights`` as linen variables for a layer of ``spec``'s kind."""
    return (conv if isinstance(spec, CONV_SPEC_TYPES) else transposed).to_variables(spec, weights, param_dtype)


def from_native(layer: Any, params: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Spec and canonical weights of a ``ConvTranspose`` (transposed), of a ``Conv`` with ``scale=`` (and
    ``method=`` or ``order=``: see :func:`upsample.backends.flax.conv.from_native`), or of an ``nnx.Sequential``,
    a linen ``nn.Sequential`` or a list of NNX layers: a head, returned as ``(HeadSpec, HeadWeights)`` (``params``
    are then the linen variables; ``stages=``: see :func:`upsample.backends.flax.head_native.from_native`)."""
    if isinstance(layer, (list, tuple, nnx.Sequential, nn.Sequential)):
        return _heads().from_native(layer, params, **kwargs)
    return (conv if "scale" in kwargs else transposed).from_native(layer, params, **kwargs)
