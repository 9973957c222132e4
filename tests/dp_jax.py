"""A batch-sharded ``jax.jit`` SGD step for the linen and the NNX layer over 4 virtual CPU devices, and the
same training on one device: ``XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/dp_jax.py
OUT.npz`` (the flag must be set before JAX starts; tests/test_distributed.py runs this in a subprocess).

The parameters are replicated (``PartitionSpec()``) and each batch is split over the mesh's ``"data"``
axis; ``jax.jit`` inserts the gradient all-reduce, which the compiled step is checked to contain.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dp_common import CASES, LR, STEPS, batches, initial_weights, save
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import upsample
from upsample.backends import flax as uf

DEVICES = 4


def sgd_step(apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """One jitted SGD step on ``mean((apply(params, x) - target)^2)``; the shardings come from the arguments."""

    def loss(params: Any, x: Any, target: Any) -> Any:
        return jnp.mean((apply(params, x) - target) ** 2)

    def step(params: Any, x: Any, target: Any) -> Any:
        grads = jax.grad(loss)(params, x, target)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

    return jax.jit(step)


def train(step: Any, params: Any, x: np.ndarray, target: np.ndarray, data: Any, replicated: Any) -> Any:
    """``STEPS`` steps with the params placed by ``replicated`` and each batch by ``data``."""
    params = jax.device_put(params, replicated)
    for i in range(STEPS):
        params = step(params, jax.device_put(x[i], data), jax.device_put(target[i], data))
    return params


def layer_api(spec: Any, api: str) -> tuple[Callable[[Any, Any], Any], Any, Callable[[Any], Any]]:
    """``(apply, initial params, params -> canonical Weights)`` for the spec's linen or NNX layer."""
    layer = spec.build("flax" if api == "linen" else "nnx", weights=initial_weights(spec))
    if api == "linen":
        module, variables = layer.unbind()
        return (
            lambda params, x: module.apply({"params": params}, x),
            variables["params"],
            lambda params: uf.get_weights((module, {"params": params})),
        )
    graphdef, state = nnx.split(layer, nnx.Param)
    return (
        lambda params, x: nnx.merge(graphdef, params)(x),
        state,
        lambda params: uf.get_weights(nnx.merge(graphdef, params)),
    )


def main(out: str) -> None:
    assert jax.device_count() == DEVICES, f"expected {DEVICES} CPU devices, got {jax.devices()}"
    mesh = Mesh(np.array(jax.devices()), ("data",))
    data, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    results = {}
    for name, (spec, size) in CASES.items():
        x, target = batches(spec, size)
        for api in ("linen", "nnx"):
            apply, params, canonical = layer_api(spec, api)
            step = sgd_step(apply)
            sharded_args = jax.device_put((params, x[0], target[0]), (replicated, data, data))
            compiled = step.lower(*sharded_args).compile().as_text()
            assert "all-reduce" in compiled, f"{name}/{api}: the sharded step has no gradient all-reduce"
            parallel = train(step, params, x, target, data, replicated)
            for leaf in jax.tree_util.tree_leaves(parallel):
                assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == DEVICES, leaf.sharding
            results[f"{name}/{api}-parallel"] = canonical(parallel)
            results[f"{name}/{api}-single"] = canonical(train(step, params, x, target, one_device, one_device))
    save(out, results)
    print(f"trained {len(CASES)} cases, linen and NNX, sharded over {DEVICES} devices and on one")


if __name__ == "__main__":
    warnings.simplefilter("ignore", upsample.UpsampleWarning)  # slice-pad-nearest has dead pixels on purpose
    main(sys.argv[1])
