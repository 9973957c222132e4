"""``upsample check``: build one spec in every installed backend from one set of weights, run it forward
and backward, and compare every result with the NumPy reference. (Named ``crosscheck`` so that it is
not confused with :mod:`upsample.checks`, the input checks every layer runs.)

Keras runs once per installed Keras backend, each in its own subprocess (``KERAS_BACKEND`` must be
set before Keras is imported). Every other backend runs in this process.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from upsample import reference
from upsample.backends import missing_packages
from upsample.messages import shown
from upsample.spec import UpsampleSpec
from upsample.weights import Weights, load_weights, save_weights

RTOL, ATOL = 1e-4, 1e-5  # float32 against the float64 reference (docs/conventions.md)


@dataclasses.dataclass(frozen=True)
class Target:
    """One row of the table: a runner module, its options, and what it needs installed."""

    label: str
    runner: str
    options: dict[str, Any]
    requires: tuple[str, ...]
    extra: str
    keras_backend: str | None = None


TARGETS = (
    Target("torch", "torch", {}, ("torch",), "torch"),
    Target("keras/tensorflow", "keras", {}, ("keras", "tensorflow"), "tensorflow", "tensorflow"),
    Target("keras/jax", "keras", {}, ("keras", "jax"), "keras,jax", "jax"),
    Target("keras/torch", "keras", {}, ("keras", "torch"), "keras,torch", "torch"),
    Target("flax-linen", "flax", {"api": "linen"}, ("jax", "flax"), "jax"),
    Target("flax-nnx", "flax", {"api": "nnx"}, ("jax", "flax"), "jax"),
)


@dataclasses.dataclass
class Outcome:
    """What a runner returns: float64 NHWC arrays, canonical weight gradients, seconds per forward call."""

    y: np.ndarray
    grad_x: np.ndarray
    grad_weights: Weights
    seconds: float


@dataclasses.dataclass
class Row:
    backend: str
    status: str  # "pass", "FAIL", "skipped", "error"
    output_shape: tuple[int, ...] | None = None
    error_output: float | None = None
    error_grad_x: float | None = None
    error_grad_weights: float | None = None
    ms_per_call: float | None = None
    note: str = ""


def select(names: str | None) -> tuple[Target, ...]:
    """The targets a ``--backends`` value names (comma-separated labels; ``None``: all)."""
    if names is None:
        return TARGETS
    labels = [t.label for t in TARGETS]
    unknown = [name for name in names.split(",") if name not in labels]
    if unknown:
        raise ValueError(f"--backends must name some of {', '.join(labels)}; got unknown {shown(','.join(unknown))}")
    return tuple(t for t in TARGETS if t.label in names.split(","))


def installed(target: Target) -> bool:
    return not missing_packages(target.requires)


def _max_error(actual: np.ndarray, expected: np.ndarray) -> tuple[float, bool]:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf"), False
    error = float(np.abs(actual - expected).max(initial=0.0))
    return error, bool(np.allclose(actual, expected, rtol=RTOL, atol=ATOL))


def compare(label: str, outcome: Outcome, expected: tuple[np.ndarray, np.ndarray, Weights]) -> Row:
    """A table row: max abs error of output, input gradient and weight gradients against the reference."""
    y, grad_x, grad_w = expected
    error_y, ok_y = _max_error(outcome.y, y)
    error_x, ok_x = _max_error(outcome.grad_x, grad_x)
    errors, oks = [], []
    for mine, theirs in zip(outcome.grad_weights.arrays(), grad_w.arrays(), strict=True):
        if mine is None or theirs is None:
            if mine is not theirs:
                errors.append(float("inf"))
                oks.append(False)
        else:
            error, ok = _max_error(mine, theirs)
            errors.append(error)
            oks.append(ok)
    ok = ok_y and ok_x and all(oks)
    return Row(
        label, "pass" if ok else "FAIL", tuple(outcome.y.shape), error_y, error_x, max(errors), outcome.seconds * 1e3
    )


def run_local(target: Target, spec: UpsampleSpec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> Outcome:
    """Run ``target``'s runner in this process."""
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    outcome: Outcome = runner.run(spec, weights, x, grad_y, **target.options)
    return outcome


def run_keras_subprocess(target: Target, folder: str) -> Outcome:
    """Run the Keras runner in a fresh interpreter with ``KERAS_BACKEND`` set; data goes through files."""
    env = {**os.environ, "KERAS_BACKEND": str(target.keras_backend)}
    result_path = os.path.join(folder, f"result-{target.keras_backend}.npz")
    command = [sys.executable, "-m", "upsample.crosscheck", folder, result_path]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"subprocess failed: {last}")
    return _read_outcome(result_path)


def _write_outcome(path: str, outcome: Outcome) -> None:
    arrays = {"y": outcome.y, "grad_x": outcome.grad_x, "seconds": np.array(outcome.seconds)}
    for name, array in zip(("kernel", "bias", "skip"), outcome.grad_weights.arrays(), strict=True):
        if array is not None:
            arrays[f"grad_{name}"] = array
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _read_outcome(path: str) -> Outcome:
    with np.load(path, allow_pickle=False) as data:
        bias = data["grad_bias"] if "grad_bias" in data else None
        skip = data["grad_skip"] if "grad_skip" in data else None
        grads = Weights(data["grad_kernel"], bias, skip)
        return Outcome(data["y"], data["grad_x"], grads, float(data["seconds"]))


def check(
    spec: UpsampleSpec,
    weights: Weights,
    x: np.ndarray,
    *,
    seed: int = 0,
    progress: Callable[[str], None] = lambda message: None,
    targets: tuple[Target, ...] = TARGETS,
) -> list[Row]:
    """A row per target (default: all) for ``spec`` with ``weights`` on input ``x`` (NHWC float32)."""
    y = reference.forward(spec, weights, x)
    grad_y = np.random.default_rng(seed + 2).normal(size=y.shape).astype(np.float32)
    expected = (y, *reference.vjp(spec, weights, x, grad_y))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        save_weights(os.path.join(folder, "weights.safetensors"), spec, weights)
        np.savez(os.path.join(folder, "data.npz"), x=x, grad_y=grad_y)
        for target in targets:
            if not installed(target):
                rows.append(Row(target.label, "skipped", note=f'pip install "upsample[{target.extra}]"'))
                continue
            progress(f"running {target.label}" + (" in a subprocess" if target.keras_backend else ""))
            try:
                if target.keras_backend:
                    outcome = run_keras_subprocess(target, folder)
                else:
                    outcome = run_local(target, spec, weights, x, grad_y)
            except Exception as error:  # a backend that crashes is a failed row, not a crashed command
                rows.append(Row(target.label, "error", note=f"{type(error).__name__}: {error}"))
                continue
            rows.append(compare(target.label, outcome, expected))
    return rows


def _worker(folder: str, result_path: str) -> None:
    """Subprocess side of :func:`run_keras_subprocess` (``KERAS_BACKEND`` is already set)."""
    spec, weights = load_weights(os.path.join(folder, "weights.safetensors"))
    with np.load(os.path.join(folder, "data.npz"), allow_pickle=False) as data:
        x, grad_y = data["x"], data["grad_y"]
    runner = importlib.import_module("upsample.runners.keras")
    _write_outcome(result_path, runner.run(spec, weights, x, grad_y))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
