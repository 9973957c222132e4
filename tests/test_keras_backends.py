"""Runs the modules that need a fixed Keras backend (``conftest.PER_KERAS_BACKEND``) once per Keras
backend, each in its own process.

``KERAS_BACKEND`` must be set before Keras is imported, so one pytest process cannot test all three
backends. This driver spawns ``python -m pytest <those modules>`` with ``KERAS_BACKEND=<backend>``
and ``UPSAMPLE_KERAS_CHILD=1`` for tensorflow, jax and torch; the modules skip themselves unless
that variable is set, so the outer run never executes the Keras tests a second time (nor with
whatever backend the outer process happens to have). The environment, UPSAMPLE_REQUIRE_BACKENDS
included, passes through. A missing framework skips its backend locally and fails when
UPSAMPLE_REQUIRE_BACKENDS names "keras" (CI).

The TensorFlow child runs with ``TF_ENABLE_ONEDNN_OPTS=0`` unless the caller sets that variable.
TensorFlow turns its oneDNN kernels on by default only on CPUs with features such as AVX512_VNNI; its
plain CPU kernels, which an AVX2-only machine runs, are stricter (they refuse an NCHW ``Conv2D``: "The
Conv2D op currently only supports the NHWC tensor format on the CPU") and sum in another order. With
oneDNN off every CI machine runs those same kernels, so a test that passes only with oneDNN fails
everywhere, not just on some machines. Measured on a 2-core AVX-512 machine (other jobs running):
the TensorFlow child's modules other than test_equivalence.py took 104 s with oneDNN and 120 s
without, test_equivalence.py 23 s and 25 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cases import require_backend, required_backends
from conftest import PER_KERAS_BACKEND

from upsample.backends import missing_packages

TESTS = Path(__file__).resolve().parent
KERAS_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # Keras backend -> package it needs
CHILD_DEFAULTS = {"tensorflow": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
"""Environment defaults per child (the caller's environment wins): TensorFlow's plain CPU kernels everywhere."""
CHILD_TIMEOUT = 2400  # seconds; a child normally takes a few minutes
TAIL_LINES = 120


def require_keras_backend(backend: str) -> None:
    """Skip when Keras or ``backend``'s framework is missing; fail if UPSAMPLE_REQUIRE_BACKENDS contains "keras"."""
    require_backend("keras")
    package = KERAS_BACKENDS[backend]
    if not missing_packages((package,)):
        return
    message = f"Keras backend {backend!r} needs {package}, which is not installed"
    if "keras" in required_backends():
        pytest.fail(message + " (UPSAMPLE_REQUIRE_BACKENDS requires keras on every backend)")
    pytest.skip(message)


@pytest.mark.parametrize("backend", sorted(KERAS_BACKENDS))
def test_keras_backend(backend: str) -> None:
    require_keras_backend(backend)
    env = {**CHILD_DEFAULTS.get(backend, {}), **os.environ, "KERAS_BACKEND": backend, "UPSAMPLE_KERAS_CHILD": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        *(str(TESTS / name) for name in PER_KERAS_BACKEND),
        "-q",
        "--disable-warnings",
        "-p",
        "no:cacheprovider",
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    elapsed = time.perf_counter() - start
    output = (result.stdout + result.stderr).splitlines()
    print(f"KERAS_BACKEND={backend}: {elapsed:.1f} s, {output[-1] if output else 'no output'}")
    assert result.returncode == 0, (
        f"per-backend tests with KERAS_BACKEND={backend} exited {result.returncode}:\n{failures(output)}"
    )


def failures(output: list[str]) -> str:
    """The child's failure and error reports (not its warnings), at most ``TAIL_LINES`` lines, and its
    closing summary; the whole tail when it printed no report (a crash)."""
    starts = [i for i, line in enumerate(output) if line.startswith("=") and ("FAILURES" in line or "ERRORS" in line)]
    if not starts:
        return "\n".join(output[-TAIL_LINES:])
    report = [line for line in output[starts[0] :] if "Warning" not in line]
    return "\n".join([*report[:TAIL_LINES], *report[-1:]])
