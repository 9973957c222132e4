"""Heads from existing Flax sequences: an ``nnx.Sequential`` (or list of NNX layers), or a linen
``nn.Sequential`` with its variables (``params`` and ``batch_stats``), as a :class:`~upsample.StackSpec` and
canonical :class:`~upsample.stack_weights.StackWeights`. Both APIs share the reading of layer attributes,
activation functions and the refusals; only where the arrays live differs (NNX: on the layer; linen: in
``variables[collection]["layers_<i>"]``, the names ``nn.Sequential`` gives its layers)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from upsample.backends.flax import transposed
from upsample.messages import shown
from upsample.stack import Activation, Norm, StackSpec
from upsample.stack_weights import NormWeights, Part, StackWeights, assemble

__all__ = ["from_native"]

_FUNCTIONS: dict[Any, str] = {jax.nn.relu: "relu", jax.nn.leaky_relu: "leaky_relu", jax.nn.gelu: "gelu"}
_FUNCTIONS.update({jnp.tanh: "tanh", jax.nn.sigmoid: "sigmoid"})
"""``nnx.relu``, ``nn.relu``, ``jax.nn.relu`` are one function (and likewise for the others)."""


def _native_activation(function: Any) -> Activation | None:
    """``jax.nn.relu``, ``jnp.tanh``, ... (or ``functools.partial`` of one with keywords) as an Activation."""
    base, keywords = (function.func, function.keywords) if isinstance(function, functools.partial) else (function, {})
    kind = _FUNCTIONS.get(base) if callable(base) else None
    if kind is None or (isinstance(function, functools.partial) and function.args):
        return None
    if kind == "leaky_relu":
        return Activation(kind, slope=float(keywords.get("negative_slope", 0.01)))
    if kind == "gelu":
        return Activation(kind, approximate=bool(keywords.get("approximate", True)))  # jax.nn.gelu's default
    return Activation(kind)


@dataclasses.dataclass(frozen=True)
class _Api:
    """What differs between NNX and linen: the layer classes, and how a layer's arrays are read."""

    name: str
    conv: Any
    batch_norm: Any
    group_norm: Any
    stage: Callable[[int, Any], Any]
    """``(index, conv) -> (UpsampleSpec, Weights)``."""
    arrays: Callable[[int, Any], tuple[Any, ...]]
    """``(index, norm) -> (scale, bias, mean, var)`` (``mean``, ``var`` ``None`` for a GroupNorm)."""


def _native_norm(api: _Api, index: int, layer: Any) -> tuple[Norm, NormWeights]:
    """A ``BatchNorm``/``GroupNorm`` (same attributes in both APIs) as a Norm with its arrays; epsilon as is,
    momentum converted (Flax's is the weight of the old value, the spec's the weight of the new batch)."""
    name = type(layer).__name__
    if not (layer.use_scale and layer.use_bias):
        raise ValueError(f"layers[{index}] ({name}) must have use_scale=True and use_bias=True")
    if isinstance(layer, api.batch_norm) and layer.axis not in (-1, 3):
        raise ValueError(f"layers[{index}] ({name}) must normalise the last axis, got axis={shown(layer.axis)}")
    arrays = api.arrays(index, layer)
    if isinstance(layer, api.group_norm):
        channels = int(arrays[0].shape[0])
        groups = layer.num_groups if layer.num_groups is not None else channels // layer.group_size
        return Norm("group", epsilon=layer.epsilon, groups=groups), NormWeights.from_arrays(arrays[:2])
    norm = Norm("batch", epsilon=layer.epsilon, momentum=1.0 - float(layer.momentum))
    return norm, NormWeights.from_arrays(arrays)


def _convert(api: _Api, layers: list[Any]) -> tuple[StackSpec, StackWeights]:
    parts: list[Part] = []
    for index, layer in enumerate(layers):
        if isinstance(layer, api.conv):
            parts.append(("stage", api.stage(index, layer)))
        elif isinstance(layer, (api.batch_norm, api.group_norm)):
            parts.append(("norm", _native_norm(api, index, layer)))
        elif (activation := _native_activation(layer)) is not None:
            parts.append(("activation", activation))
        else:
            parts.append(("other", getattr(layer, "__name__", type(layer).__name__)))
    expected = (
        f"{api.name}.ConvTranspose stages, each followed by at most one {api.name}.BatchNorm/{api.name}.GroupNorm "
        "and one of relu, leaky_relu, gelu, tanh, sigmoid"
    )
    return assemble(parts, "layers", expected)


def _nnx_arrays(index: int, layer: Any) -> tuple[Any, ...]:
    arrays = (layer.scale, layer.bias, getattr(layer, "mean", None), getattr(layer, "var", None))
    return tuple(None if a is None else a[...] for a in arrays)


def _nnx_stage(index: int, conv: nnx.ConvTranspose) -> Any:
    return transposed.from_native(conv)


_NNX = _Api("nnx", nnx.ConvTranspose, nnx.BatchNorm, nnx.GroupNorm, _nnx_stage, _nnx_arrays)


def _linen_api(variables: Mapping[str, Any]) -> _Api:
    """Reads each layer's arrays from ``variables`` by the name ``nn.Sequential`` gives it (``layers_<i>``)."""

    def collection(kind: str, index: int) -> Mapping[str, Any]:
        tree = variables.get(kind, {}).get(f"layers_{index}")
        if not isinstance(tree, Mapping):
            raise ValueError(f"variables[{kind!r}] has no entry 'layers_{index}' for layers[{index}]")
        return tree

    def stage(index: int, conv: nn.ConvTranspose) -> Any:
        return transposed.from_native(conv, collection("params", index))

    def arrays(index: int, layer: Any) -> tuple[Any, ...]:
        params = collection("params", index)
        if isinstance(layer, nn.GroupNorm):
            return params["scale"], params["bias"], None, None
        stats = collection("batch_stats", index)
        return params["scale"], params["bias"], stats["mean"], stats["var"]

    return _Api("nn", nn.ConvTranspose, nn.BatchNorm, nn.GroupNorm, stage, arrays)


def from_native(model: Any, variables: Mapping[str, Any] | None = None) -> tuple[StackSpec, StackWeights]:
    """Spec and canonical weights of a sequence of ``ConvTranspose`` stages, each but the last followed by the
    same ``BatchNorm``/``GroupNorm`` (or none) and activation function (``relu``, ``leaky_relu``, ``gelu``,
    ``tanh``, ``sigmoid`` from ``jax.nn``/``nnx``/``nn``/``jnp``, or a ``functools.partial`` of one), the last
    by an optional activation:

    - NNX: an ``nnx.Sequential`` or a list of NNX layers (``variables`` not used);
    - linen: an ``nn.Sequential`` with its ``variables`` (``{"params": ..., "batch_stats": ...}`` as
      ``model.init`` returns them), or a bound one.

    The converted head computes the same outputs in both modes; its running variance then follows the spec
    (unbiased, as torch), where Flax's own ``BatchNorm`` uses the biased variance."""
    if isinstance(model, nn.Module):
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"model must be a flax.linen.Sequential (or an NNX sequence), got {type(model).__name__}")
        if variables is None:
            if model.scope is None:
                raise ValueError("an unbound linen Sequential holds no weights: call from_native(model, variables)")
            variables = model.variables
        if not isinstance(variables, Mapping) or not isinstance(variables.get("params"), Mapping):
            raise TypeError(f"variables must be a dict with a 'params' collection, got {shown(variables)}")
        return _convert(_linen_api(variables), list(model.layers))
    if variables is not None:
        raise TypeError(f"variables is only for a linen nn.Sequential (NNX layers hold theirs), got {shown(variables)}")
    layers = list(model.layers) if isinstance(model, nnx.Sequential) else list(model)
    return _convert(_NNX, layers)
