"""Flax heads: a linen :class:`Head` and an NNX :class:`HeadNNX` (NHWC), holding the stage layers
of :mod:`upsample.backends.flax` and a small explicit normalisation (:mod:`upsample.head_ops`: Flax's
``BatchNorm`` updates the running variance with the biased batch variance, the spec with the unbiased one).

Variables (both APIs, the same tree)::

    stages_<i>/...          each stage's own parameters (see its kind's module)
    norms_<i>/scale, offset  (C,) params of the norm after stage i
    norms_<i>/mean, var      (C,) running statistics: linen collection "batch_stats", NNX ``nnx.BatchStat``

Linen: ``head.apply(variables, x, train=True, mutable=["batch_stats"])`` trains (batch statistics, running
statistics returned); ``train=False`` (the default) uses the running statistics. NNX: ``head.train()`` /
``head.eval()`` set ``use_running_average`` as for ``nnx.BatchNorm``, and like it a new head starts in training
mode.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from upsample import head_ops
from upsample.backends import flax as stage_backend
from upsample.backends import kind_module
from upsample.backends.flax.common import check_unbatched
from upsample.backends.flax.head_native import from_native
from upsample.head import HeadSpec, Norm
from upsample.head_weights import HeadWeights, NormWeights, init_head

__all__ = ["Head", "HeadNNX", "build", "from_native", "get_weights", "set_weights", "to_variables"]

Array = Any


def _stage_class(stage: Any, api: str) -> Any:
    """The layer class of a stage spec in ``api``, from its kind's module (the kinds table)."""
    return kind_module(stage_backend.__name__, stage).layer_class(stage, api)


def _require_spec(spec: Any) -> HeadSpec:
    if not isinstance(spec, HeadSpec):
        raise TypeError(f"spec must be an upsample.HeadSpec, got {type(spec).__name__}")
    return spec


def _normalise(norm: Norm, x: Array, scale: Array, offset: Array, statistics: tuple[Array, Array] | None) -> Array:
    """Group, instance or layer norm, or batch norm in inference mode with ``statistics = (mean, var)``."""
    if norm.kind != "batch":  # group, instance, layer: per sample, no running statistics
        return head_ops.group_norm(jnp, x, norm, scale, offset, -1, x.shape)
    assert statistics is not None
    return head_ops.batch_norm(jnp, x, norm, scale, offset, *statistics, -1)


def _train_batch_norm(norm: Norm, x: Array, scale: Array, offset: Array, mean: Array, var: Array) -> tuple[Array, ...]:
    head_ops.require_batch_statistics(x.shape, -1)
    count = head_ops.values_per_channel(x.shape, -1)
    return head_ops.batch_norm_train(jnp, x, norm, scale, offset, mean, var, -1, count)


# --- linen --------------------------------------------------------------------------------------


class _Norm(nn.Module):
    norm: Norm
    channels: int

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        scale = self.param("scale", nn.initializers.ones, (self.channels,))
        offset = self.param("offset", nn.initializers.zeros, (self.channels,))
        if self.norm.kind != "batch":
            return _normalise(self.norm, x, scale, offset, None)
        mean = self.variable("batch_stats", "mean", jnp.zeros, (self.channels,))
        var = self.variable("batch_stats", "var", jnp.ones, (self.channels,))
        if not train:
            return _normalise(self.norm, x, scale, offset, (mean.value, var.value))
        y, new_mean, new_var = _train_batch_norm(self.norm, x, scale, offset, mean.value, var.value)
        if not self.is_initializing():
            mean.value, var.value = new_mean, new_var
        return y


class Head(nn.Module):
    """The head ``spec`` describes as a linen module (NHWC); variables as in the module docstring."""

    spec: HeadSpec
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        spec = _require_spec(self.spec)
        common = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        self.stages = [_stage_class(stage, "linen")(stage, **common) for stage in spec.stages]
        self.norms = [_Norm(spec.norm, stage.out_channels) for i, stage in enumerate(spec.stages) if spec.normed(i)]  # type: ignore[arg-type]

    def __call__(self, x: Array, train: bool = False) -> Array:
        """``(B, *spatial, C_in)`` -> ``(B, *spatial', C_out)`` (an unbatched ``(*spatial, C_in)`` too, as the
        stage layers take it); ``train=True`` (with ``mutable=["batch_stats"]``) uses and updates batch
        statistics."""
        if getattr(x, "ndim", None) == self.spec.spatial_dims + 1:
            check_unbatched(self.spec.stages[0], x)  # messages show the shape passed, not the batch of one
            return self(x[None], train)[0]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.spec.normed(i):
                x = self.norms[i](x, train)
            x = head_ops.activate(jax.nn, self.spec.activation_after(i), x)
        return x


def to_variables(spec: HeadSpec, weights: HeadWeights, param_dtype: Any = jnp.float32) -> dict[str, Any]:
    """Canonical ``weights`` as linen variables ``{"params": ..., "batch_stats": ...}`` for :class:`Head`."""
    weights.check(_require_spec(spec))
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for i, (stage, stage_weights, norm) in enumerate(zip(spec.stages, weights.stages, weights.norms, strict=True)):
        params[f"stages_{i}"] = stage_backend.to_variables(stage, stage_weights, param_dtype)["params"]
        if norm is not None:
            params[f"norms_{i}"] = {
                "scale": jnp.asarray(norm.scale, param_dtype),
                "offset": jnp.asarray(norm.offset, param_dtype),
            }
            if norm.running_mean is not None:
                stats[f"norms_{i}"] = {
                    "mean": jnp.asarray(norm.running_mean, param_dtype),
                    "var": jnp.asarray(norm.running_var, param_dtype),
                }
    return {"params": params, "batch_stats": stats} if stats else {"params": params}


def _from_trees(spec: HeadSpec, params: Any, stats: Any) -> HeadWeights:
    stages = tuple(
        stage_backend.get_weights((_stage_class(stage, "linen")(stage), {"params": params[f"stages_{i}"]}))
        for i, stage in enumerate(spec.stages)
    )
    norms: list[NormWeights | None] = []
    for i in range(len(spec.stages)):
        if not spec.normed(i):
            norms.append(None)
            continue
        own, running = params[f"norms_{i}"], stats.get(f"norms_{i}") if stats else None
        arrays = [own["scale"], own["offset"], *((running["mean"], running["var"]) if running else (None, None))]
        norms.append(NormWeights.from_arrays(arrays))
    return HeadWeights(stages, tuple(norms))


# --- NNX ----------------------------------------------------------------------------------------


class _NormNNX(nnx.Module):
    mean: Any
    var: Any

    def __init__(self, norm: Norm, channels: int, param_dtype: Any = jnp.float32) -> None:
        self.norm = norm
        self.use_running_average = True
        self.scale = nnx.Param(jnp.ones((channels,), param_dtype))
        self.offset = nnx.Param(jnp.zeros((channels,), param_dtype))
        batch = norm.kind == "batch"
        self.mean = nnx.data(nnx.BatchStat(jnp.zeros((channels,), param_dtype)) if batch else None)
        self.var = nnx.data(nnx.BatchStat(jnp.ones((channels,), param_dtype)) if batch else None)

    def __call__(self, x: Array) -> Array:
        scale, offset = self.scale[...], self.offset[...]
        if self.mean is None:
            return _normalise(self.norm, x, scale, offset, None)
        if self.use_running_average:
            return _normalise(self.norm, x, scale, offset, (self.mean[...], self.var[...]))
        y, new_mean, new_var = _train_batch_norm(self.norm, x, scale, offset, self.mean[...], self.var[...])
        self.mean[...], self.var[...] = new_mean, new_var
        return y


class HeadNNX(nnx.Module):
    """The head ``spec`` describes as an NNX module (NHWC). Like every NNX module it takes ``rngs``: without
    ``weights`` its stages are initialised by Flax from ``rngs`` (as :class:`UpsampleNNX` and the other NNX
    layers), its norms at scale 1, offset 0, running mean 0, variance 1; with ``weights`` it holds them
    (``rngs`` then unused). Like ``nnx.BatchNorm`` it starts in training mode unless ``use_running_average=True``:
    ``head.eval()`` switches BatchNorm to the running statistics, ``head.train()`` back.

    Args:
        spec: the head.
        rngs: ``nnx.Rngs`` to draw the stages' weights from; needed when ``weights`` is ``None``.
        weights: canonical :class:`~upsample.HeadWeights`.
        use_running_average: start in inference mode, as ``nnx.BatchNorm(use_running_average=True)``.
        param_dtype, dtype, fast_path: passed to every stage layer.
    """

    def __init__(
        self,
        spec: HeadSpec,
        *,
        rngs: nnx.Rngs | None = None,
        weights: HeadWeights | None = None,
        param_dtype: Any = jnp.float32,
        use_running_average: bool = False,
        **kwargs: Any,
    ) -> None:
        self.spec = _require_spec(spec)
        if weights is None and not isinstance(rngs, nnx.Rngs):
            raise TypeError(
                f"rngs must be an nnx.Rngs to draw the weights from (or pass weights=), got {type(rngs).__name__}"
            )
        if weights is not None:
            weights.check(spec)
            stages = [
                stage_backend.build(stage, weights=w, api="nnx", param_dtype=param_dtype, **kwargs)
                for stage, w in zip(spec.stages, weights.stages, strict=True)
            ]
        else:
            stages = [
                _stage_class(stage, "nnx")(stage, rngs=rngs, param_dtype=param_dtype, **kwargs) for stage in spec.stages
            ]
        self.stages = nnx.List(stages)
        self.norms = nnx.List(
            [
                _NormNNX(spec.norm, stage.out_channels, param_dtype)  # type: ignore[arg-type]
                for i, stage in enumerate(spec.stages)
                if spec.normed(i)
            ]  # type: ignore[arg-type]
        )
        if weights is not None:
            set_weights(self, weights)
        self.eval() if use_running_average else self.train()

    def __call__(self, x: Array) -> Array:
        """``(B, *spatial, C_in)`` -> ``(B, *spatial', C_out)``; an unbatched ``(*spatial, C_in)`` too, as the
        stage layers take it (a batch of one for the norms)."""
        if getattr(x, "ndim", None) == self.spec.spatial_dims + 1:
            check_unbatched(self.spec.stages[0], x)  # messages show the shape passed, not the batch of one
            return self(x[None])[0]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.spec.normed(i):
                x = self.norms[i](x)
            x = head_ops.activate(jax.nn, self.spec.activation_after(i), x)
        return x


# --- weights ------------------------------------------------------------------------------------


def get_weights(head: Any) -> HeadWeights:
    """Canonical weights of a :class:`HeadNNX`, a bound linen :class:`Head` or a ``(Head, variables)`` pair."""
    if isinstance(head, HeadNNX):
        stages = tuple(stage_backend.get_weights(stage) for stage in head.stages)
        norms: list[NormWeights | None] = []
        for i in range(len(head.spec.stages)):
            if not head.spec.normed(i):
                norms.append(None)
                continue
            n = head.norms[i]
            arrays = [n.scale, n.offset, n.mean, n.var]
            norms.append(NormWeights.from_arrays([None if a is None else a[...] for a in arrays]))
        return HeadWeights(stages, tuple(norms))
    if isinstance(head, Head) and head.scope is not None:
        module, variables = head.unbind()
    elif isinstance(head, tuple) and len(head) == 2 and isinstance(head[0], Head):
        module, variables = head
    else:
        raise TypeError(f"head must be a HeadNNX, a bound linen Head or (Head, variables), got {type(head).__name__}")
    return _from_trees(module.spec, variables["params"], variables.get("batch_stats"))


def set_weights(head: Any, weights: HeadWeights) -> Any:
    """Put canonical ``weights`` into ``head`` and return it (NNX in place; linen: a new bound module)."""
    if isinstance(head, HeadNNX):
        weights.check(head.spec)
        for stage, stage_weights in zip(head.stages, weights.stages, strict=True):
            stage_backend.set_weights(stage, stage_weights)
        for i, norm_weights in enumerate(weights.norms):
            if norm_weights is None:
                continue
            n = head.norms[i]
            for variable, array in zip((n.scale, n.offset, n.mean, n.var), norm_weights.arrays(), strict=True):
                if variable is not None:
                    variable[...] = jnp.asarray(array, variable[...].dtype)
        return head
    if not isinstance(head, Head):
        raise TypeError(f"head must be a HeadNNX or a linen Head, got {type(head).__name__}")
    module = head.unbind()[0] if head.scope is not None else head
    return module.bind(to_variables(module.spec, weights, module.param_dtype))


def build(spec: HeadSpec, *, weights: HeadWeights | None = None, api: str = "linen", **kwargs: Any) -> Any:
    """The head holding ``weights`` (default ``init_weights(spec, seed=0)``): ``api="linen"`` a bound
    :class:`Head`, ``api="nnx"`` a :class:`HeadNNX`."""
    weights = init_head(spec) if weights is None else weights
    if api == "linen":
        return set_weights(Head(spec, **kwargs), weights)
    if api == "nnx":
        return HeadNNX(spec, weights=weights, **kwargs)
    raise ValueError(f"api must be 'linen' or 'nnx', got {api!r}")
