"""A batch-sharded ``jax.jit`` training step of a linen ``Head`` and of an ``HeadNNX`` in training mode over 4
virtual CPU devices, and the same training on one device: ``XLA_FLAGS=--xla_force_host_platform_device_count=4
python tests/dp_heads_jax.py OUT.npz`` (tests/test_distributed_heads.py runs it in a subprocess).

Parameters and running statistics are replicated, each batch is split over the mesh's ``"data"`` axis.
``jax.jit`` computes on the sharded batch as on the whole array, so BatchNorm's mean and variance are the
global batch's: the compiled training-mode forward pass is checked to contain a cross-device ``all-reduce``
(with replicated parameters, nothing else in a forward pass over a batch-sharded input needs one).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dp_heads_common import HEADS, JAX_HEADS, LR, batches, initial_weights, save
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from upsample.backends.flax import head as heads
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights

DEVICES = 4
Forward = Callable[[Any, Any, Any], tuple[Any, Any]]
"""``(params, stats, x) -> (y, updated stats)`` in training mode."""


def head_api(spec: HeadSpec, api: str) -> tuple[Forward, Any, Any, Callable[[Any, Any], HeadWeights]]:
    """``(forward, params, stats, (params, stats) -> canonical weights)`` of the linen or NNX head."""
    head = heads.build(spec, weights=initial_weights(spec), api=api)
    if api == "linen":
        module, variables = head.unbind()

        def linen_forward(params: Any, stats: Any, x: Any) -> tuple[Any, Any]:
            y, updates = module.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
            return y, updates["batch_stats"]

        return (
            linen_forward,
            variables["params"],
            variables.get("batch_stats", {}),
            lambda p, s: heads.get_weights((module, {"params": p, "batch_stats": s})),
        )
    head.train()  # BatchNorm on batch statistics (a new HeadNNX starts so; said here, not assumed)
    graphdef, params, stats = nnx.split(head, nnx.Param, nnx.BatchStat)

    def nnx_forward(p: Any, s: Any, x: Any) -> tuple[Any, Any]:
        model = nnx.merge(graphdef, p, s, copy=True)
        return model(x), nnx.state(model, nnx.BatchStat)

    return nnx_forward, params, stats, lambda p, s: heads.get_weights(nnx.merge(graphdef, p, s))


def sgd_step(forward: Forward) -> Any:
    """One jitted SGD step on ``sum(y * grad_y)``, returning new params and the updated running statistics."""

    def loss(params: Any, stats: Any, x: Any, grad_y: Any) -> tuple[Any, Any]:
        y, updated = forward(params, stats, x)
        return jnp.sum(y * grad_y), updated

    def step(params: Any, stats: Any, x: Any, grad_y: Any) -> tuple[Any, Any]:
        grads, updated = jax.grad(loss, has_aux=True)(params, stats, x, grad_y)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), updated

    return jax.jit(step)


def train(step: Any, params: Any, stats: Any, data: list[Any], batch: Any, replicated: Any) -> tuple[Any, Any]:
    params, stats = jax.device_put((params, stats), replicated)
    for x, grad_y in data:
        params, stats = step(params, stats, jax.device_put(x, batch), jax.device_put(grad_y, batch))
    return params, stats


def main(out: str) -> None:
    assert jax.device_count() == DEVICES, f"expected {DEVICES} CPU devices, got {jax.devices()}"
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    results = {}
    for name in JAX_HEADS:
        spec = HEADS[name]
        data = batches(spec)
        for api in ("linen", "nnx"):
            forward, params, stats, canonical = head_api(spec, api)
            x = jax.device_put(data[0][0], batch)
            hlo = jax.jit(forward).lower(*jax.device_put((params, stats), replicated), x).compile().as_text()
            assert "all-reduce" in hlo, f"{name}/{api}: the sharded forward pass has no cross-device reduction"
            step = sgd_step(forward)
            parallel = train(step, params, stats, data, batch, replicated)
            for leaf in jax.tree_util.tree_leaves(parallel):
                assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == DEVICES, leaf.sharding
            results[f"{name}/{api}-parallel"] = canonical(*parallel)
            results[f"{name}/{api}-single"] = canonical(*train(step, params, stats, data, one_device, one_device))
    save(out, results)
    print(f"trained {len(JAX_HEADS)} heads, linen and NNX, sharded over {DEVICES} devices and on one")


if __name__ == "__main__":
    main(sys.argv[1])
