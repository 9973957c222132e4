"""Heads from existing Flax sequences: an ``nnx.Sequential`` (or list of NNX layers), or a linen
``nn.Sequential`` with its variables (``params`` and ``batch_stats``), as a :class:`~upsample.HeadSpec` and
canonical :class:`~upsample.head_weights.HeadWeights`. Both APIs share the reading of layer attributes,
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

from upsample import head_patterns
from upsample.backends.flax import conv_native, transposed
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights, NormWeights
from upsample.messages import shown

__all__ = ["from_native"]

_FUNCTIONS: dict[Any, str] = {jax.nn.relu: "relu", jax.nn.leaky_relu: "leaky_relu", jax.nn.gelu: "gelu"}
_FUNCTIONS.update({jnp.tanh: "tanh", jax.nn.sigmoid: "sigmoid", jax.nn.silu: "silu", jax.nn.elu: "elu"})
"""``nnx.relu``, ``nn.relu``, ``jax.nn.relu`` are one function (and likewise for the others; ``jax.nn.swish`` is
``jax.nn.silu``)."""
_LAYER_NORMS = (nn.LayerNorm, nnx.LayerNorm)
_INSTANCE_NORMS = (nn.InstanceNorm, nnx.InstanceNorm)


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
    if kind == "elu":
        return Activation(kind, alpha=float(keywords.get("alpha", 1.0)))
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


def _native_norm(api: _Api, index: int, layer: Any, rank: int) -> tuple[Norm, NormWeights]:
    """A ``BatchNorm``/``GroupNorm`` (same attributes in both APIs) as a Norm with its arrays; epsilon as is,
    momentum converted (Flax's is the weight of the old value, the spec's the weight of the new batch).
    ``rank``: the head's spatial axes (the channel axis is ``-1``, or ``rank + 1``)."""
    name = type(layer).__name__
    last = (-1, rank + 1, (-1,), (rank + 1,))
    if not (layer.use_scale and layer.use_bias):
        raise ValueError(f"layers[{index}] ({name}) must have use_scale=True and use_bias=True")
    if isinstance(layer, api.batch_norm) and layer.axis not in last:
        raise ValueError(f"layers[{index}] ({name}) must normalise the last axis, got axis={shown(layer.axis)}")
    arrays = api.arrays(index, layer)
    if isinstance(layer, _LAYER_NORMS + _INSTANCE_NORMS):
        axes = layer.reduction_axes if isinstance(layer, _LAYER_NORMS) else -1
        if axes not in last or layer.feature_axes not in last:
            raise ValueError(
                f"layers[{index}] ({name}) must normalise and scale the last axis only, got "
                f"reduction_axes={shown(axes)}, feature_axes={shown(layer.feature_axes)}"
            )
        kind = "layer" if isinstance(layer, _LAYER_NORMS) else "instance"
        return Norm(kind, epsilon=layer.epsilon), NormWeights.from_arrays(arrays[:2])
    if isinstance(layer, api.group_norm):
        channels = int(arrays[0].shape[0])
        groups = layer.num_groups if layer.num_groups is not None else channels // layer.group_size
        return Norm("group", epsilon=layer.epsilon, groups=groups), NormWeights.from_arrays(arrays[:2])
    norm = Norm("batch", epsilon=layer.epsilon, momentum=1.0 - float(layer.momentum))
    return norm, NormWeights.from_arrays(arrays)


def _convert(
    api: _Api, layers: list[Any], stages: Mapping[int, Mapping[str, Any]], variables: Mapping[str, Any] | None
) -> tuple[HeadSpec, HeadWeights]:
    """The head ``layers`` describe, grouped by :mod:`upsample.head_patterns`; a ``Conv`` at an index of
    ``stages`` is a sub-pixel (with the function after it) or resize stage (with the one before it)."""
    roles = [_role(api, layer) for layer in layers]
    rank = next((_rank(layer) for layer, role in zip(layers, roles, strict=True) if role in ("transposed", "conv")), 2)
    for index, options in stages.items():
        if not isinstance(index, int) or not 0 <= index < len(layers) or roles[index] != "conv":
            raise ValueError(f"stages has key {shown(index)}: expected the index of a {api.name}.Conv in layers")
        if not isinstance(options, Mapping) or "scale" not in options:
            raise TypeError(f"stages[{index}] must be a dict with scale= (and method= or order=), got {shown(options)}")
        neighbour = index - 1 if options.get("method") is not None else index + 1
        role = "resize" if options.get("method") is not None else "shuffle"
        if not 0 <= neighbour < len(layers) or roles[neighbour] != "other":
            raise ValueError(f"stages[{index}] needs the {role} function at layers[{neighbour}], found none there")
        roles[neighbour] = role
    flat = [
        (f"layers[{i}]", getattr(layer, "__name__", type(layer).__name__), role, (i, layer))
        for i, (layer, role) in enumerate(zip(layers, roles, strict=True))
    ]

    def stage(kind: str, members: list[tuple[int, Any]]) -> Any:
        if kind == "transposed":
            return api.stage(*members[0])
        index, layer = next(member for member in members if _role(api, member[1]) == "conv")
        params = None if variables is None else variables["params"].get(f"layers_{index}")
        return conv_native.from_native(layer, params, **stages[index])

    names = {
        "transposed": f"{api.name}.ConvTranspose",
        "conv": f"{api.name}.Conv",
        "shuffle": "its pixel-shuffle function (stages={index: dict(scale=..., order=...)})",
        "resize": "its resize function (stages={index: dict(scale=..., method=...)})",
        "norm": f"{api.name}.BatchNorm/GroupNorm/LayerNorm/InstanceNorm",
        "activation": "of relu, leaky_relu, gelu, tanh, sigmoid, silu (swish), elu",
    }
    return head_patterns.read_head(
        flat,
        names,
        None,
        stage,
        lambda position, member: _native_norm(api, member[0], member[1], rank),
        lambda member: _native_activation(member[1]),
    )


def _rank(conv: Any) -> int:
    """The spatial axes of a Flax ``Conv``/``ConvTranspose`` (an int ``kernel_size`` is one axis, as in Flax)."""
    return 1 if isinstance(conv.kernel_size, int) else len(conv.kernel_size)


def _role(api: _Api, layer: Any) -> str:
    """The layer's role in a head (:data:`upsample.head_patterns.ROLES`); functions are ``"other"``."""
    if isinstance(layer, api.conv):
        return "transposed"
    if isinstance(layer, (nn.Conv, nnx.Conv)):
        return "conv"
    if isinstance(layer, (api.batch_norm, api.group_norm, *_LAYER_NORMS, *_INSTANCE_NORMS)):
        return "norm"
    return "activation" if _native_activation(layer) is not None else "other"


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
        if not isinstance(layer, nn.BatchNorm):  # group, layer, instance: no running statistics
            return params["scale"], params["bias"], None, None
        stats = collection("batch_stats", index)
        return params["scale"], params["bias"], stats["mean"], stats["var"]

    return _Api("nn", nn.ConvTranspose, nn.BatchNorm, nn.GroupNorm, stage, arrays)


def from_native(
    model: Any, variables: Mapping[str, Any] | None = None, *, stages: Mapping[int, Mapping[str, Any]] | None = None
) -> tuple[HeadSpec, HeadWeights]:
    """Spec and canonical weights of a sequence of stages, each but the last followed by the same
    ``BatchNorm``/``GroupNorm`` (or none) and activation function (``relu``, ``leaky_relu``, ``gelu``,
    ``tanh``, ``sigmoid`` from ``jax.nn``/``nnx``/``nn``/``jnp``, or a ``functools.partial`` of one), the last
    by an optional activation:

    - NNX: an ``nnx.Sequential`` or a list of NNX layers (``variables`` not used);
    - linen: an ``nn.Sequential`` with its ``variables`` (``{"params": ..., "batch_stats": ...}`` as
      ``model.init`` returns them), or a bound one.

    A stage is a ``ConvTranspose``, or a ``Conv`` whose index is a key of ``stages``: JAX has no pixel-shuffle
    or resize layer, so ``stages[i]`` gives the single-layer keywords of
    :func:`upsample.backends.flax.conv_native.from_native` (``scale=`` and ``order=``: the function after the
    ``Conv`` is its pixel shuffle; ``scale=`` and ``method=``: the function before it is its resize).

    The converted head computes the same outputs in both modes; its running variance then follows the spec
    (unbiased, as torch), where Flax's own ``BatchNorm`` uses the biased variance."""
    stages = {} if stages is None else stages
    if not isinstance(stages, Mapping):
        raise TypeError(f"stages must be a dict {{index of a Conv: dict(scale=..., ...)}}, got {shown(stages)}")
    if isinstance(model, nn.Module):
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"model must be a flax.linen.Sequential (or an NNX sequence), got {type(model).__name__}")
        if variables is None:
            if model.scope is None:
                raise ValueError("an unbound linen Sequential holds no weights: call from_native(model, variables)")
            variables = model.variables
        if not isinstance(variables, Mapping) or not isinstance(variables.get("params"), Mapping):
            raise TypeError(f"variables must be a dict with a 'params' collection, got {shown(variables)}")
        return _convert(_linen_api(variables), list(model.layers), stages, variables)
    if variables is not None:
        raise TypeError(f"variables is only for a linen nn.Sequential (NNX layers hold theirs), got {shown(variables)}")
    layers = list(model.layers) if isinstance(model, nnx.Sequential) else list(model)
    return _convert(_NNX, layers, stages, None)
