"""Data parallelism on CPU: run with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (tests/test_flax.py
does, in a subprocess, since the flag must be set before JAX starts). A batch sharded over a 4-device mesh
gives the single-device outputs and gradients, for the linen and the NNX module, 1x1 (fast path) and larger
inputs.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import upsample
from upsample.backends import flax as uf


def main() -> None:
    assert jax.device_count() == 4, f"expected 4 CPU devices, got {jax.devices()}"
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    spec = upsample.UpsampleSpec(6, 5, kernel_size=4, stride=2, padding=1, residual="projection")
    weights = upsample.init_weights(spec, seed=1)
    weights = upsample.Weights(weights.kernel, np.linspace(-1, 1, 5, dtype=np.float32), weights.skip)
    module = uf.Upsample(spec)
    graphdef, nnx_params = nnx.split(uf.build(spec, weights=weights, api="nnx"), nnx.Param)
    layers = {
        "linen": (lambda params, x: module.apply({"params": params}, x), uf.to_variables(spec, weights)["params"]),
        "nnx": (lambda params, x: nnx.merge(graphdef, params)(x), nnx_params),
    }
    rng = np.random.default_rng(0)
    for size in ((1, 1), (3, 2)):
        x = rng.normal(size=(8, *size, 6)).astype(np.float32)
        for name, (apply, params) in layers.items():
            loss = lambda p, x, apply=apply: (apply(p, x) ** 2).sum()  # noqa: E731
            run = jax.jit(lambda p, x, apply=apply, loss=loss: (apply(p, x), jax.grad(loss, (0, 1))(p, x)))
            single = run(jax.device_put(params, jax.devices()[0]), jax.device_put(x, jax.devices()[0]))
            sharded = run(jax.device_put(params, replicated), jax.device_put(x, batch))
            shard_batches = sorted(shard.data.shape[0] for shard in sharded[0].addressable_shards)
            assert shard_batches == [2, 2, 2, 2], f"{name}: output not split over the mesh: {shard_batches}"
            for got, want in zip(jax.tree_util.tree_leaves(sharded), jax.tree_util.tree_leaves(single), strict=True):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5, err_msg=name)
            expected = upsample.reference.forward(spec, weights, x)
            np.testing.assert_allclose(np.asarray(single[0]), expected, rtol=1e-4, atol=1e-5, err_msg=name)
    print("sharded results match the single-device results")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. a sharding or dead-pixel warning would be a finding
        main()
