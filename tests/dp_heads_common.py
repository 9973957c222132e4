"""Shared by the data-parallel head workers (tests/dp_heads_torch.py, dp_heads_jax.py, dp_heads_keras.py) and
tests/test_distributed_heads.py: the heads, their seeded weights and batches, and two float64 NumPy oracles.

Every run trains a head in training mode from the same weights on the same batches: ``STEPS`` plain SGD steps
(rate ``LR``) on the loss ``sum(y * grad_y)`` (:func:`upsample.head_reference.sgd_step`'s), one new batch of
``BATCH`` samples per step. :func:`global_oracle` is that training on whole batches (BatchNorm statistics of
the global batch); :func:`sharded_oracle` is what an engine computes that normalises each shard with its own
statistics, sums the shards' gradients and keeps shard 0's running statistics (torch DDP with BatchNorm2d).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dp_common
import numpy as np

import upsample
from upsample import head_reference
from upsample.crosscheck import head_check_weights, head_data, trainable
from upsample.head import HeadSpec, Norm
from upsample.head_weights import HeadWeights

STEPS = 3
LR = 0.05
BATCH = 8  # divisible by 2 (torch processes) and 4 (JAX devices)

HEADS: dict[str, HeadSpec] = {
    # 1x1 -> 4x4 dense transposed stage, BatchNorm, ReLU, 4x4 -> 8x8 transposed stage, tanh
    "transposed-batch": upsample.plan(8, 8, 3, "transposed", norm="batch", final_activation="tanh"),
    # a sub-pixel head with a BatchNorm off the defaults (momentum 0.3, epsilon 1e-3)
    "subpixel-batch": upsample.plan(
        8, 8, 3, "subpixel", norm=Norm("batch", momentum=0.3, epsilon=1e-3), final_activation="tanh"
    ),
    # GroupNorm: per-sample statistics, so sharding the batch changes nothing
    "subpixel-group": upsample.plan(8, 8, 3, "subpixel", norm=Norm("group", groups=2), activation="gelu"),
}
"""Name -> head: BatchNorm heads (statistics over the batch) and a GroupNorm head (per sample)."""

JAX_HEADS = ("subpixel-batch",)
"""The heads the JAX worker trains: each costs six XLA compilations (forward, and the step sharded and on one
device, linen and NNX), 8 s of CPU here, so one BatchNorm head (GroupNorm has per-sample statistics: nothing
for sharding to change)."""
BATCH_NORM_HEADS = tuple(name for name, spec in HEADS.items() if spec.norm is not None and spec.norm.kind == "batch")


def initial_weights(spec: HeadSpec) -> HeadWeights:
    """Seeded float32 weights off their starting point (norm scales and offsets, running statistics)."""
    return head_check_weights(spec, seed=3)


def batches(spec: HeadSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """``STEPS`` seeded ``(x, grad_y)`` pairs of ``BATCH`` samples, NHWC float32."""
    return head_data(spec, batch=BATCH, steps=STEPS, seed=7)


def global_oracle(spec: HeadSpec, weights: HeadWeights, data: list[tuple[np.ndarray, np.ndarray]]) -> HeadWeights:
    """The training on whole batches, float64: :func:`upsample.head_reference.sgd_step` per batch."""
    for x, grad_y in data:
        weights = head_reference.sgd_step(spec, weights, x, grad_y, LR)
    return weights


def sharded_oracle(
    spec: HeadSpec, weights: HeadWeights, data: list[tuple[np.ndarray, np.ndarray]], shards: int
) -> HeadWeights:
    """Each batch split into ``shards`` equal shards, each normalised with its own batch statistics; the update
    is the sum of the shards' gradients (the gradient of the summed losses) and the running statistics are
    those shard 0 alone gives. float64."""
    for x, grad_y in data:
        size = len(x) // shards
        parts = [(x[i * size : (i + 1) * size], grad_y[i * size : (i + 1) * size]) for i in range(shards)]
        total: dict[str, np.ndarray] = {}
        for xs, gs in parts:
            _, grads = head_reference.vjp(spec, weights, xs, gs, training=True)
            for name, array in trainable(grads).items():
                total[name] = total.get(name, 0.0) + array
        _, updated = head_reference.forward(spec, weights, parts[0][0], training=True)
        running = {name: a for name, a in updated.flat().items() if ".running_" in name}
        moved = {name: np.asarray(a, np.float64) - LR * total[name] for name, a in trainable(weights).items()}
        weights = HeadWeights.from_flat(spec, {**moved, **running})
    return weights


def save(path: str, results: dict[str, HeadWeights]) -> None:
    """Write ``{"<head>/<run>": HeadWeights}`` to one ``.npz`` (keys ``<head>/<run>/<flat name>``)."""
    np.savez(path, **{f"{key}/{name}": a for key, w in results.items() for name, a in w.flat().items()})


def load(path: str) -> dict[str, HeadWeights]:
    """Inverse of :func:`save`."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            run, name = key.rsplit("/", 1)
            grouped.setdefault(run, {})[name] = data[key]
    return {run: HeadWeights.from_flat(HEADS[run.split("/")[0]], arrays) for run, arrays in grouped.items()}


def run_worker(script: str, env: dict[str, str], out: Path) -> dict[str, HeadWeights]:
    """:func:`dp_common.run_worker` reading heads' results (:func:`load`)."""
    return dp_common.run_worker(script, env, out, load)


def flat64(weights: Any) -> dict[str, np.ndarray]:
    """``weights.flat()`` as float64."""
    return {name: np.asarray(a, np.float64) for name, a in weights.flat().items()}
