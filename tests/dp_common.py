"""Shared by the data-parallel workers (tests/dp_torch.py, dp_jax.py, dp_keras.py) and
tests/test_distributed.py: the cases, the seeded batches, the loss, and the NumPy oracle.

Every run trains from the same initial weights on the same batches: ``STEPS`` plain SGD steps (learning
rate ``LR``) on the mean squared error to a fixed target, one new batch of ``BATCH`` samples per step.
Data-parallel runs split each batch over the devices or processes, so their averaged gradients are the
full batch's gradient only if the engine reduces them correctly. The oracle is the same training in
float64 NumPy with :func:`upsample.reference.vjp`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import upsample
from upsample import reference

STEPS = 3
LR = 0.5
BATCH = 8  # divisible by 2 (torch processes) and 4 (JAX devices)
CHANNELS = 4

CASES: dict[str, tuple[Any, tuple[int, int]]] = {
    # 1x1 input: the matmul fast path, with a learned projection skip
    "fast-path-projection": (
        upsample.UpsampleSpec.for_size(CHANNELS, 4, out_channels=3, residual="projection"),
        (1, 1),
    ),
    # 4x4 -> 8x8 (k4 s2 p1): the native transposed convolution
    "4x4-to-8x8": (upsample.UpsampleSpec.for_size(CHANNELS, 8, input_size=4), (4, 4)),
    # crops no framework expresses (slice and pad), with the identity skip
    "slice-pad-nearest": (
        upsample.UpsampleSpec(
            CHANNELS, CHANNELS, kernel_size=3, stride=2, padding=((1, -1), (0, 2)), residual="nearest"
        ),
        (3, 3),
    ),
    # sub-pixel convolution (conv + pixel shuffle) with a projection skip
    "subpixel-projection": (upsample.SubpixelSpec(CHANNELS, 3, scale=2, residual="projection"), (3, 3)),
    # bilinear resize-convolution with the identity skip
    "resize-bilinear-nearest": (
        upsample.ResizeSpec(CHANNELS, CHANNELS, scale=2, method="bilinear", residual="nearest"),
        (3, 3),
    ),
}
"""Name -> (spec, input size): every spec kind; grows with the kinds (heads next)."""


def initial_weights(spec: Any) -> Any:
    """Seeded weights with a non-zero bias (``init_weights`` starts biases at zero)."""
    weights = upsample.init_weights(spec, seed=5)
    bias = None
    if weights.bias is not None:
        bias = np.random.default_rng(5).normal(scale=0.1, size=weights.bias.shape).astype(np.float32)
    return upsample.Weights(weights.kernel, bias, weights.skip)


def batches(spec: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, target)``, float32 NHWC, one batch per step: shapes ``(STEPS, BATCH, ...)``."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(STEPS, BATCH, *size, spec.in_channels)).astype(np.float32)
    target = rng.normal(size=(STEPS, BATCH, *spec.output_size(size), spec.out_channels)).astype(np.float32)
    return x, target


def sgd_oracle(spec: Any, weights: Any, x: np.ndarray, target: np.ndarray) -> Any:
    """``STEPS`` SGD steps on ``mean((y - target)^2)`` in float64 NumPy (reference forward and VJP)."""
    arrays = [None if a is None else np.asarray(a, np.float64) for a in weights.arrays()]
    for step in range(STEPS):
        current = upsample.Weights(*arrays)
        y = reference.forward(spec, current, x[step])
        _, grads = reference.vjp(spec, current, x[step], 2 * (y - target[step]) / y.size)
        arrays = [None if a is None else a - LR * g for a, g in zip(arrays, grads.arrays(), strict=True)]
    return upsample.Weights(*arrays)


def save(path: str, results: dict[str, Any]) -> None:
    """Write ``{"<case>/<run>": Weights}`` to one ``.npz`` (keys ``<case>/<run>/<kernel|bias|skip>``)."""
    arrays = {}
    for key, weights in results.items():
        for name, array in zip(("kernel", "bias", "skip"), weights.arrays(), strict=True):
            if array is not None:
                arrays[f"{key}/{name}"] = np.asarray(array)
    np.savez(path, **arrays)


def load(path: str) -> dict[str, Any]:
    """Inverse of :func:`save`."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            run, name = key.rsplit("/", 1)
            grouped.setdefault(run, {})[name] = data[key]
    return {run: upsample.Weights(**arrays) for run, arrays in grouped.items()}


WORKER_TIMEOUT = 300  # seconds; each worker takes under 30 s on a loaded 2-core CPU


def run_worker(script: str, env: dict[str, str], out: Path, read: Callable[[str], Any] = load) -> Any:
    """Run a worker script of this folder in a subprocess with ``env`` added; what ``read`` makes of its
    ``out`` file."""
    tests = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, str(tests / script), str(out)],
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stdout}\n{result.stderr[-4000:]}"
    return read(str(out))


def free_port() -> int:
    """A free TCP port on the loopback address, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
