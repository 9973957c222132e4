"""Flax (linen and NNX) layers for every spec kind, one module per kind; the names below are the adapter's
interface (the same in every backend package: see :mod:`upsample.backends`). ``build``, ``get_weights``,
``set_weights`` and ``to_variables`` pick the kind's module from the spec or layer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

from upsample.backends import kind_module
from upsample.backends.flax import conv_native, transposed
from upsample.backends.flax.conv import ResizeConv, ResizeConvNNX, Subpixel, SubpixelNNX
from upsample.backends.flax.transposed import Upsample, UpsampleNNX

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


def _heads() -> Any:
    """The heads module, imported on use: it imports this package."""
    from upsample.backends.flax import head

    return head


def _kind(layer: Any) -> Any:
    """The module of this package for the kind of ``layer`` (NNX, bound linen, or ``(module, variables)``: every
    layer has ``.spec``), through the kinds table."""
    module = layer[0] if isinstance(layer, tuple) and layer else layer
    try:
        return kind_module(__name__, getattr(module, "spec", None))
    except TypeError:
        raise TypeError(
            f"layer must be a layer of upsample.backends.flax (NNX, bound linen or (module, variables)), "
            f"got {type(module).__name__}"
        ) from None


def build(spec: Any, *, weights: Any = None, api: str = "linen", **kwargs: Any) -> Any:
    """The layer for ``spec`` of any kind (``api="linen" | "nnx"``; a ``HeadSpec``: its head): the registry's
    entry point."""
    return kind_module(__name__, spec).build(spec, weights=weights, api=api, **kwargs)


def get_weights(layer: Any) -> Any:
    """Canonical weights of a layer of any kind (NNX, bound linen, or ``(module, variables)``; a head's:
    ``HeadWeights``)."""
    return _kind(layer).get_weights(layer)


def set_weights(layer: Any, weights: Any) -> Any:
    """Put canonical ``weights`` into a layer of any kind and return it."""
    return _kind(layer).set_weights(layer, weights)


def to_variables(spec: Any, weights: Any, param_dtype: Any = jnp.float32) -> dict[str, Any]:
    """Canonical ``weights`` as linen variables for a layer of ``spec``'s kind."""
    return kind_module(__name__, spec).to_variables(spec, weights, param_dtype)


def from_native(layer: Any, params: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Spec and canonical weights of a ``ConvTranspose`` (transposed), of a ``Conv`` with ``scale=`` or ``size=`` (and
    ``method=`` or ``order=``: see :func:`upsample.backends.flax.conv_native.from_native`), or of an ``nnx.Sequential``,
    a linen ``nn.Sequential`` or a list of NNX layers: a head, returned as ``(HeadSpec, HeadWeights)`` (``params``
    are then the linen variables; ``stages=``: see :func:`upsample.backends.flax.head_native.from_native`)."""
    if isinstance(layer, (list, tuple, nnx.Sequential, nn.Sequential)):
        return _heads().from_native(layer, params, **kwargs)
    return (conv_native if "scale" in kwargs or "size" in kwargs else transposed).from_native(layer, params, **kwargs)
