"""``upsample check``: build one spec (a single layer or a whole head) in every installed backend from one set
of weights, run it forward and backward (a head also trains a few SGD steps), and compare every result with
the NumPy reference. (Named ``crosscheck`` so that it is
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

from upsample import head_reference, reference
from upsample.backends import missing_packages
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights, load_head, save_head
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
    """What a runner returns: float64 channels-last arrays, canonical weight gradients, seconds per forward call."""

    y: np.ndarray
    grad_x: np.ndarray
    grad_weights: Weights
    seconds: float


@dataclasses.dataclass
class HeadOutcome:
    """What a runner's ``train_head`` returns, float64 channels-last; weights as flat canonical arrays
    (:meth:`HeadWeights.flat` names). ``y``, ``grad_x`` and ``grads`` are the first batch's training-mode pass,
    ``y_eval`` the first batch in inference mode before training, ``trained`` the weights (running statistics
    included) after one SGD step per batch."""

    y: np.ndarray
    grad_x: np.ndarray
    grads: dict[str, np.ndarray]
    y_eval: np.ndarray
    trained: dict[str, np.ndarray]


HEAD_LEARNING_RATE = 1e-3
"""The SGD rate of a head check: the loss ``sum(y * grad_y)`` of a 32x32 head is steep enough that larger rates
amplify float32 rounding past the tolerance within three steps (0.05 does for the tests' 32x32 heads)."""


def head_gradient_atol(spec: HeadSpec, name: str, batch: int) -> float:
    """The absolute tolerance of a head's gradient named ``name`` (:meth:`HeadWeights.flat`): a stage's weights
    and a norm's scale and offset are per-channel sums over the ``B * pixels`` output values of their stage, so
    float32 leaves cancellation noise of order ``ATOL * sqrt(B * pixels)`` (measured: up to 1.4e-5 over 96 values
    for a bias gradient that is exactly zero before a BatchNorm, in Flax; 1.3e-5 over 32 values for a BatchNorm
    scale gradient of 0.025 summed from terms up to 20, in Keras on TensorFlow)."""
    size = spec.stage_sizes()[int(name.split(".")[1]) + 1]
    return ATOL * float(np.sqrt(batch * np.prod(size)))


def head_input_atol(spec: HeadSpec) -> float:
    """The absolute tolerance of a head's input gradient: each input value's gradient is a float32 sum over the
    ``n`` values of the first stage's output per input pixel, so ``ATOL * sqrt(n)`` (measured: 1.8e-5 on an
    entry of 0.072 summed from terms up to 30, a GroupNorm head from 1x1 whose first stage has 1024 outputs
    per input pixel, Flax with the nearest resize run as a transposed convolution)."""
    size, out = spec.stage_sizes()[:2]
    per_pixel = np.prod(out) * spec.stages[0].out_channels / np.prod(size)
    return ATOL * max(1.0, float(np.sqrt(per_pixel)))


def trainable(weights: HeadWeights) -> dict[str, np.ndarray]:
    """The flat arrays a gradient has (no running statistics), float64."""
    return {name: np.asarray(a, np.float64) for name, a in weights.flat().items() if ".running_" not in name}


def expected_head(
    spec: HeadSpec, weights: HeadWeights, data: list[tuple[np.ndarray, np.ndarray]], learning_rate: float
) -> HeadOutcome:
    """The reference's :class:`HeadOutcome` for ``data`` (``(x, grad_y)`` pairs, channels-last)."""
    x, grad_y = data[0]
    y, _ = head_reference.forward(spec, weights, x, training=True)
    grad_x, grads = head_reference.vjp(spec, weights, x, grad_y, training=True)
    y_eval, _ = head_reference.forward(spec, weights, x, training=False)
    trained = weights
    for xs, gs in data:
        trained = head_reference.sgd_step(spec, trained, xs, gs, learning_rate)
    flat = {name: np.asarray(a, np.float64) for name, a in trained.flat().items()}
    return HeadOutcome(y, grad_x, trainable(grads), y_eval, flat)


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
    error_trained: float | None = None


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


def _max_error(actual: np.ndarray, expected: np.ndarray, atol: float = ATOL) -> tuple[float, bool]:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf"), False
    error = float(np.abs(actual - expected).max(initial=0.0))
    return error, bool(np.allclose(actual, expected, rtol=RTOL, atol=atol))


def _max_errors(
    actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], atol: Callable[[str], float]
) -> tuple[float, bool]:
    """The largest error over the arrays of ``expected`` (a missing or extra name fails)."""
    if set(actual) != set(expected):
        return float("inf"), False
    results = [_max_error(actual[name], array, atol(name)) for name, array in expected.items()]
    return max((e for e, _ in results), default=0.0), all(ok for _, ok in results)


def compare_head(label: str, spec: HeadSpec, outcome: HeadOutcome, expected: HeadOutcome) -> Row:
    """A table row for a head: outputs (training and inference mode), input gradient, weight gradients, and the
    weights after the SGD steps, each against the reference."""
    batch = len(expected.y)
    error_y, ok_y = _max_error(outcome.y, expected.y)
    error_eval, ok_eval = _max_error(outcome.y_eval, expected.y_eval)
    error_x, ok_x = _max_error(outcome.grad_x, expected.grad_x, head_input_atol(spec))
    error_w, ok_w = _max_errors(outcome.grads, expected.grads, lambda name: head_gradient_atol(spec, name, batch))
    error_t, ok_t = _max_errors(outcome.trained, expected.trained, lambda name: ATOL)
    ok = ok_y and ok_eval and ok_x and ok_w and ok_t
    return Row(
        label,
        "pass" if ok else "FAIL",
        tuple(outcome.y.shape),
        max(error_y, error_eval),
        error_x,
        error_w,
        error_trained=error_t,
    )


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
        label,
        "pass" if ok else "FAIL",
        tuple(outcome.y.shape),
        error_y,
        error_x,
        max(errors, default=0.0),
        outcome.seconds * 1e3,
    )


def run_local(target: Target, spec: UpsampleSpec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> Outcome:
    """Run ``target``'s runner in this process."""
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    outcome: Outcome = runner.run(spec, weights, x, grad_y, **target.options)
    return outcome


def train_local(
    target: Target, spec: HeadSpec, weights: HeadWeights, data: list[tuple[np.ndarray, np.ndarray]], rate: float
) -> HeadOutcome:
    """Run ``target``'s ``train_head`` in this process."""
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    outcome: HeadOutcome = runner.train_head(spec, weights, data, rate, **target.options)
    return outcome


def run_keras_subprocess(target: Target, folder: str) -> Any:
    """Run the Keras runner in a fresh interpreter with ``KERAS_BACKEND`` set; data goes through files."""
    env = {**os.environ, "KERAS_BACKEND": str(target.keras_backend)}
    result_path = os.path.join(folder, f"result-{target.keras_backend}.npz")
    command = [sys.executable, "-m", "upsample.crosscheck", folder, result_path]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"subprocess failed: {last}")
    return _read_outcome(result_path)


def _write_outcome(path: str, outcome: Outcome | HeadOutcome) -> None:
    if isinstance(outcome, HeadOutcome):
        arrays = {"y": outcome.y, "grad_x": outcome.grad_x, "y_eval": outcome.y_eval}
        arrays.update({f"grads/{name}": a for name, a in outcome.grads.items()})
        arrays.update({f"trained/{name}": a for name, a in outcome.trained.items()})
    else:
        arrays = {"y": outcome.y, "grad_x": outcome.grad_x, "seconds": np.array(outcome.seconds)}
        for name, array in zip(("kernel", "bias", "skip"), outcome.grad_weights.arrays(), strict=True):
            if array is not None:
                arrays[f"grad_{name}"] = array
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _read_outcome(path: str) -> Outcome | HeadOutcome:
    with np.load(path, allow_pickle=False) as data:
        if "y_eval" in data:
            part = lambda prefix: {n.removeprefix(prefix): data[n] for n in data.files if n.startswith(prefix)}  # noqa: E731
            return HeadOutcome(data["y"], data["grad_x"], part("grads/"), data["y_eval"], part("trained/"))
        grads = Weights(*(data[f"grad_{n}"] if f"grad_{n}" in data else None for n in ("kernel", "bias", "skip")))
        return Outcome(data["y"], data["grad_x"], grads, float(data["seconds"]))


def _rows(
    targets: tuple[Target, ...],
    progress: Callable[[str], None],
    folder: str,
    run_here: Callable[[Target], Any],
    compare_one: Callable[[Target, Any], Row],
) -> list[Row]:
    """A row per target: skipped where not installed, Keras in a subprocess reading ``folder``, the rest by
    ``run_here``; a backend that crashes is an error row, not a crashed command."""
    rows = []
    for target in targets:
        if not installed(target):
            rows.append(Row(target.label, "skipped", note=f'pip install "upsample[{target.extra}]"'))
            continue
        progress(f"running {target.label}" + (" in a subprocess" if target.keras_backend else ""))
        try:
            outcome = run_keras_subprocess(target, folder) if target.keras_backend else run_here(target)
        except Exception as error:
            rows.append(Row(target.label, "error", note=f"{type(error).__name__}: {error}"))
            continue
        rows.append(compare_one(target, outcome))
    return rows


def check(
    spec: UpsampleSpec,
    weights: Weights,
    x: np.ndarray,
    *,
    seed: int = 0,
    progress: Callable[[str], None] = lambda message: None,
    targets: tuple[Target, ...] = TARGETS,
) -> list[Row]:
    """A row per target (default: all) for ``spec`` with ``weights`` on input ``x`` (channels-last float32)."""
    y = reference.forward(spec, weights, x)
    grad_y = np.random.default_rng(seed + 2).normal(size=y.shape).astype(np.float32)
    expected = (y, *reference.vjp(spec, weights, x, grad_y))
    with tempfile.TemporaryDirectory() as folder:
        save_weights(os.path.join(folder, "weights.safetensors"), spec, weights)
        np.savez(os.path.join(folder, "data.npz"), x=x, grad_y=grad_y)
        return _rows(
            targets,
            progress,
            folder,
            lambda target: run_local(target, spec, weights, x, grad_y),
            lambda target, outcome: compare(target.label, outcome, expected),
        )


def head_check_weights(spec: HeadSpec, seed: int = 0) -> HeadWeights:
    """Seeded float32 weights for a head check: ``init_weights`` moved off its starting point (biases start at
    zero, norms at scale 1, offset 0 and running statistics 0 and 1), so every path is exercised."""
    from upsample.head_weights import NormWeights, init_head

    rng = np.random.default_rng(seed)
    weights = init_head(spec, seed=seed)

    def norm(n: NormWeights | None) -> NormWeights | None:
        if n is None:
            return None
        scale, offset = rng.uniform(0.5, 1.5, n.scale.shape), rng.normal(0, 0.2, n.offset.shape)
        if n.running_mean is None:
            return NormWeights(scale, offset)
        return NormWeights(scale, offset, rng.normal(0, 0.3, n.scale.shape), rng.uniform(0.5, 2.0, n.scale.shape))

    stages = tuple(
        Weights(*(None if a is None else a + rng.normal(0, 0.05, a.shape) for a in w.arrays()))  # type: ignore[arg-type]
        for w in weights.stages
    )
    return HeadWeights(stages, tuple(norm(n) for n in weights.norms)).astype(np.float32)


def head_data(spec: HeadSpec, batch: int = 2, steps: int = 3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``steps`` seeded ``(x, grad_y)`` pairs for a head check, NHWC float32."""
    rng = np.random.default_rng(seed)
    size, out = spec.input_size, spec.output_size()
    return [
        (
            rng.normal(size=(batch, *size, spec.in_channels)).astype(np.float32),
            rng.normal(size=(batch, *out, spec.out_channels)).astype(np.float32),
        )
        for _ in range(steps)
    ]


def check_head(
    spec: HeadSpec,
    weights: HeadWeights,
    data: list[tuple[np.ndarray, np.ndarray]],
    *,
    learning_rate: float = HEAD_LEARNING_RATE,
    progress: Callable[[str], None] = lambda message: None,
    targets: tuple[Target, ...] = TARGETS,
) -> list[Row]:
    """A row per target (default: all) for the head ``spec`` with ``weights``: the first batch of ``data``
    forward (training and inference mode) and backward, then one SGD step per batch (:class:`HeadOutcome`)."""
    expected = expected_head(spec, weights, data, learning_rate)
    with tempfile.TemporaryDirectory() as folder:
        save_head(os.path.join(folder, "head.safetensors"), spec, weights)
        arrays = {f"{name}{i}": a for i, pair in enumerate(data) for name, a in zip(("x", "grad_y"), pair, strict=True)}
        np.savez(os.path.join(folder, "data.npz"), learning_rate=np.array(learning_rate), **arrays)  # type: ignore[arg-type]
        return _rows(
            targets,
            progress,
            folder,
            lambda target: train_local(target, spec, weights, data, learning_rate),
            lambda target, outcome: compare_head(target.label, spec, outcome, expected),
        )


def _worker(folder: str, result_path: str) -> None:
    """Subprocess side of :func:`run_keras_subprocess` (``KERAS_BACKEND`` is already set)."""
    runner = importlib.import_module("upsample.runners.keras")
    with np.load(os.path.join(folder, "data.npz"), allow_pickle=False) as data:
        if os.path.exists(os.path.join(folder, "head.safetensors")):
            head, weights = load_head(os.path.join(folder, "head.safetensors"))
            steps = sum(name.startswith("grad_y") for name in data.files)
            pairs = [(data[f"x{i}"], data[f"grad_y{i}"]) for i in range(steps)]
            outcome = runner.train_head(head, weights, pairs, float(data["learning_rate"]))
        else:
            spec, single = load_weights(os.path.join(folder, "weights.safetensors"))
            outcome = runner.run(spec, single, data["x"], data["grad_y"])
    _write_outcome(result_path, outcome)


if __name__ == "__main__":
    # through the imported module, whose classes are the ones the runners return (not ``__main__``'s copies)
    from upsample import crosscheck

    crosscheck._worker(sys.argv[1], sys.argv[2])
