"""Cross-framework equivalence: one spec and one set of weights give the same numbers everywhere.

For each case every backend in this process (torch; Keras on this process's ``KERAS_BACKEND``; Flax
linen; Flax NNX) runs forward and backward with one shared upstream gradient, through the same
runners ``upsample check`` uses. Outputs, input gradients and weight gradients (converted back to the
canonical layout) are compared with the float64 NumPy reference and with each other. A failure prints
the spec as JSON so it can be replayed with ``upsample check SPEC.json``.

Run once per Keras backend by tests/test_keras_backends.py (``KERAS_BACKEND`` is fixed per process);
``UPSAMPLE_EQUIVALENCE_EXAMPLES`` sets the number of hypothesis cases (default 200).
"""

from __future__ import annotations

import importlib
import itertools
import os

import numpy as np
import pytest
from cases import ATOL, assert_close, cases, random_input, random_weights, require_backend, sweep, sweep_ids
from hypothesis import HealthCheck, given, settings

from upsample import UpsampleSpec, Weights, reference
from upsample.crosscheck import TARGETS, Outcome

KERAS_BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# backend name for require_backend -> target
IN_PROCESS = {
    "torch": next(t for t in TARGETS if t.label == "torch"),
    "keras": next(t for t in TARGETS if t.keras_backend == KERAS_BACKEND),
    "flax": next(t for t in TARGETS if t.label == "flax-linen"),
    "nnx": next(t for t in TARGETS if t.label == "flax-nnx"),
}
EXAMPLES = int(os.environ.get("UPSAMPLE_EQUIVALENCE_EXAMPLES", "200"))


@pytest.fixture(scope="module")
def targets() -> dict[str, object]:
    for name in IN_PROCESS:
        require_backend(name)
    return IN_PROCESS


def run_everywhere(spec: UpsampleSpec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> dict[str, Outcome]:
    outcomes = {}
    for target in IN_PROCESS.values():
        runner = importlib.import_module(f"upsample.runners.{target.runner}")
        outcomes[target.label] = runner.run(spec, weights, x, grad_y, repeats=0, **target.options)
    return outcomes


def assert_outcomes_close(first: Outcome, second: Outcome, what: str, spec: UpsampleSpec, atol: float = ATOL) -> None:
    assert_close(first.y, second.y, f"{what}: output", spec, atol=atol)
    assert_close(first.grad_x, second.grad_x, f"{what}: input gradient", spec, atol=atol)
    for name, mine, theirs in zip(
        ("kernel", "bias", "skip"), first.grad_weights.arrays(), second.grad_weights.arrays(), strict=True
    ):
        assert (mine is None) == (theirs is None), f"{what}: {name} gradient present in one only; {spec.to_json()}"
        if mine is not None:
            assert_close(mine, theirs, f"{what}: {name} gradient", spec, atol=atol)


def check_case(spec: UpsampleSpec, size: tuple[int, int], batch: int, seed: int) -> None:
    weights, x = random_weights(spec, seed), random_input(spec, batch, size, seed)
    y = reference.forward(spec, weights, x)
    grad_y = np.random.default_rng(seed + 2).normal(size=y.shape).astype(np.float32)
    expected = Outcome(y, *reference.vjp(spec, weights, x, grad_y), seconds=0.0)
    outcomes = run_everywhere(spec, weights, x, grad_y)
    for label, outcome in outcomes.items():
        assert_outcomes_close(outcome, expected, f"{label} vs reference", spec)
    # Two float32 results may each sit up to the tolerance from the reference, so pairs get twice the atol.
    for (label_a, a), (label_b, b) in itertools.combinations(outcomes.items(), 2):
        assert_outcomes_close(a, b, f"{label_a} vs {label_b}", spec, atol=2 * ATOL)


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(case=cases())
def test_drawn_cases_agree_everywhere(targets: dict, case: tuple) -> None:
    check_case(*case)


@pytest.mark.parametrize(("spec", "size"), sweep()[::3], ids=sweep_ids()[::3])
def test_sweep_agrees_everywhere(targets: dict, spec: UpsampleSpec, size: tuple[int, int]) -> None:
    check_case(spec, size, 2, seed=17)
