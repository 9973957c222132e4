"""Data-parallel training of heads with normalisation, in each framework's own engine: what happens to BatchNorm
statistics (docs/training-at-scale.md, "Normalisation layers and per-device statistics").

- JAX (tests/dp_heads_jax.py): a batch-sharded ``jax.jit`` step of a linen and an NNX head over 4 virtual CPU
  devices computes the global batch's statistics; parameters and running statistics match the one-device run
  and the float64 oracle of whole batches.
- Keras ``DataParallel`` on JAX (tests/dp_heads_keras.py, 4 virtual CPU devices, ``train_on_batch``): the same.
- torch DDP (tests/dp_heads_torch.py, 2 gloo processes): ``nn.BatchNorm2d`` normalises each shard with its own
  statistics and the running statistics are rank 0's; the result matches the oracle of that (per-shard
  statistics, summed gradients, shard 0's running statistics) and is far from the global one. GroupNorm heads
  (per-sample statistics) match the global oracle.

Each worker runs in a subprocess: process groups and JAX's device count are per process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cases import require_backend
from dp_heads_common import (
    BATCH,
    BATCH_NORM_HEADS,
    HEADS,
    JAX_HEADS,
    LR,
    STEPS,
    batches,
    flat64,
    global_oracle,
    initial_weights,
    run_worker,
    sharded_oracle,
)
from test_distributed import JAX_ENV

from upsample.crosscheck import head_gradient_atol
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights

RTOL, ATOL = 1e-4, 1e-5
MIN_CHANGE = 0.1
"""Training must move some parameter and some running statistic by more than this (the oracle's own run)."""
DDP_PROCESSES = 2


def atol(spec: HeadSpec, name: str) -> float:
    """``ATOL`` for running statistics; for a parameter, what ``STEPS`` float32 updates of ``LR`` times a gradient
    summed over ``B * H * W`` values leave, ``STEPS * LR * head_gradient_atol`` (measured while choosing the heads:
    5.2e-5 on a last-stage kernel entry of 0.25, 2048 values per channel, a 16x16 BatchNorm head in JAX, against
    a bound of 6.8e-5 there; plain ``ATOL`` failed)."""
    if ".running_" in name:
        return ATOL
    return max(ATOL, STEPS * LR * head_gradient_atol(spec, name, BATCH))


def assert_close(spec: HeadSpec, got: HeadWeights, want: HeadWeights, what: str) -> None:
    """Every array, parameters and running statistics, to ``RTOL`` and :func:`atol`."""
    got_flat, want_flat = flat64(got), flat64(want)
    assert set(got_flat) == set(want_flat), f"{what}: arrays {sorted(got_flat)} vs {sorted(want_flat)}"
    for name, array in want_flat.items():
        tolerance = atol(spec, name)
        np.testing.assert_allclose(got_flat[name], array, rtol=RTOL, atol=tolerance, err_msg=f"{what}: {name}")


def largest_difference(a: HeadWeights, b: HeadWeights, running: bool) -> float:
    """The largest absolute difference over the running statistics (``running``) or over the parameters."""
    fa, fb = flat64(a), flat64(b)
    return max(float(np.abs(fa[n] - fb[n]).max()) for n in fa if (".running_" in n) == running)


@pytest.fixture(scope="module")
def oracles() -> dict[str, tuple[HeadWeights, HeadWeights]]:
    """Each head's ``(global, per-shard)`` float64 training; the per-shard one over ``DDP_PROCESSES`` shards."""
    out = {}
    for name, spec in HEADS.items():
        weights, data = initial_weights(spec), batches(spec)
        out[name] = (global_oracle(spec, weights, data), sharded_oracle(spec, weights, data, DDP_PROCESSES))
    return out


def test_oracles_tell_batch_statistics_apart(oracles: dict[str, tuple[HeadWeights, HeadWeights]]) -> None:
    """Training moves the weights, and sharding changes BatchNorm heads' training but not GroupNorm's: else the
    tests below could not tell global from per-shard statistics."""
    for name, spec in HEADS.items():
        whole, sharded = oracles[name]
        start = initial_weights(spec)
        assert largest_difference(whole, start, running=False) > MIN_CHANGE, name
        if name in BATCH_NORM_HEADS:
            assert largest_difference(whole, start, running=True) > MIN_CHANGE, name
            assert largest_difference(whole, sharded, running=False) > MIN_CHANGE, name
            assert largest_difference(whole, sharded, running=True) > MIN_CHANGE / 10, name
        else:
            assert_close(spec, sharded, whole, f"{name}: per-shard vs global oracle")


def test_jax_sharded_step_uses_global_batch_statistics(
    oracles: dict[str, tuple[HeadWeights, HeadWeights]], tmp_path: Path
) -> None:
    require_backend("flax")
    results = run_worker("dp_heads_jax.py", JAX_ENV, tmp_path / "jax.npz")
    runs = ("linen-parallel", "linen-single", "nnx-parallel", "nnx-single")
    assert set(results) == {f"{name}/{run}" for name in JAX_HEADS for run in runs}
    for name in JAX_HEADS:
        for run in runs:
            what = f"JAX {name} {run} vs the global oracle"
            assert_close(HEADS[name], results[f"{name}/{run}"], oracles[name][0], what)
        for api in ("linen", "nnx"):
            parallel, single = results[f"{name}/{api}-parallel"], results[f"{name}/{api}-single"]
            assert_close(HEADS[name], parallel, single, f"JAX {name} {api}: 4 devices vs one")


def test_keras_data_parallel_uses_global_batch_statistics(
    oracles: dict[str, tuple[HeadWeights, HeadWeights]], tmp_path: Path
) -> None:
    for backend in ("keras", "flax"):
        require_backend(backend)
    env = {**JAX_ENV, "KERAS_BACKEND": "jax"}
    results = run_worker("dp_heads_keras.py", env, tmp_path / "keras.npz")
    assert set(results) == {f"{name}/keras-{run}" for name in JAX_HEADS for run in ("parallel", "single")}
    for name in JAX_HEADS:
        parallel, single = results[f"{name}/keras-parallel"], results[f"{name}/keras-single"]
        assert_close(HEADS[name], parallel, oracles[name][0], f"Keras {name} DataParallel vs the global oracle")
        assert_close(HEADS[name], single, oracles[name][0], f"Keras {name} one device vs the global oracle")
        assert_close(HEADS[name], parallel, single, f"Keras {name}: 4 devices vs one")


def test_torch_ddp_batch_norm_uses_shard_statistics(
    oracles: dict[str, tuple[HeadWeights, HeadWeights]], tmp_path: Path
) -> None:
    require_backend("torch")
    results = run_worker("dp_heads_torch.py", {}, tmp_path / "torch.npz")
    assert set(results) == {f"{name}/ddp" for name in HEADS}
    for name in HEADS:
        whole, sharded = oracles[name]
        ddp = results[f"{name}/ddp"]
        if name in BATCH_NORM_HEADS:
            # rank 0's running statistics from its own shards, parameters from per-shard normalisation
            assert_close(HEADS[name], ddp, sharded, f"DDP {name} vs the per-shard oracle")
            assert largest_difference(ddp, whole, running=False) > MIN_CHANGE, name
        else:
            assert_close(HEADS[name], ddp, whole, f"DDP {name} vs the global oracle")
