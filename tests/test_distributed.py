"""Data-parallel training of our layers in each framework's own engine (issue 19): torch DDP over 2 gloo
processes, a batch-sharded ``jax.jit`` step (linen and NNX) over 4 virtual CPU devices, and Keras
``DataParallel`` on JAX over 4 devices. Each worker (tests/dp_*.py, run in a subprocess because process
groups and JAX's device count are per process) trains every case of tests/dp_common.py both in parallel
and on one device from the same weights and batches; here the two must give the same parameters, and
both must match the independent oracle: the same SGD in float64 NumPy through ``upsample.reference.vjp``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from cases import ATOL, RTOL, require_backend
from dp_common import CASES, batches, initial_weights, run_worker, sgd_oracle

import upsample

TESTS = Path(__file__).resolve().parent
JAX_ENV = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}


class Engine(NamedTuple):
    """A worker script, the backends it needs, its extra environment, and the runs it writes per case."""

    script: str
    needs: tuple[str, ...]
    env: dict[str, str]
    runs: tuple[str, ...]


ENGINES = {
    "torch-ddp": Engine("dp_torch.py", ("torch",), {}, ("parallel", "single")),
    "jax-sharded": Engine(
        "dp_jax.py", ("flax",), JAX_ENV, ("linen-parallel", "linen-single", "nnx-parallel", "nnx-single")
    ),
    "keras-data-parallel": Engine(
        "dp_keras.py", ("keras", "flax"), {**JAX_ENV, "KERAS_BACKEND": "jax"}, ("parallel", "single")
    ),
}

MIN_CHANGE = 100 * ATOL
"""Training must move some parameter by more than this, so that a wrong (e.g. unreduced) gradient shows."""


@pytest.fixture(scope="module")
def oracle() -> dict[str, upsample.Weights]:
    """Each case's parameters after the float64 NumPy SGD."""
    return {name: sgd_oracle(spec, initial_weights(spec), *batches(spec, size)) for name, (spec, size) in CASES.items()}


def assert_same(actual: upsample.Weights, expected: upsample.Weights, what: str) -> None:
    for name, got, want in zip(("kernel", "bias", "skip"), actual.arrays(), expected.arrays(), strict=True):
        assert (got is None) == (want is None), f"{what}: {name} present in one run only"
        if got is not None:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{what}: {name}")


def largest_difference(a: upsample.Weights, b: upsample.Weights) -> float:
    pairs = zip(a.arrays(), b.arrays(), strict=True)
    return max(float(np.abs(np.asarray(x) - y).max()) for x, y in pairs if x is not None)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_data_parallel_matches_single_device_and_oracle(
    engine: str, oracle: dict[str, upsample.Weights], tmp_path: Path
) -> None:
    script, needs, env, runs = ENGINES[engine]
    for backend in needs:
        require_backend(backend)
    results = run_worker(script, env, tmp_path / f"{engine}.npz")
    assert set(results) == {f"{case}/{run}" for case in CASES for run in runs}
    for case, (spec, _) in CASES.items():
        change = largest_difference(oracle[case], initial_weights(spec))
        assert change > MIN_CHANGE, f"{case}: training moved the parameters by only {change:.1e}"
        for run in runs:
            assert_same(results[f"{case}/{run}"], oracle[case], f"{engine} {case} {run} vs the NumPy oracle")
            if run.endswith("parallel"):
                single = run.replace("parallel", "single")
                assert_same(results[f"{case}/{run}"], results[f"{case}/{single}"], f"{engine} {case} {run} vs {single}")
