"""Shared test material: the fixed sweep of specs, hypothesis strategies, tolerances, and the
rule for frameworks that are not installed (skip locally, fail in CI).
"""

from __future__ import annotations

import importlib
import itertools
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

import upsample
from upsample import backends

RTOL, ATOL = 1e-4, 1e-5  # float32 against the float64 reference (DESIGN.md)


def required_backends() -> set[str]:
    """The backends UPSAMPLE_REQUIRE_BACKENDS names (CI): missing ones fail instead of skipping."""
    return {b.strip() for b in os.environ.get("UPSAMPLE_REQUIRE_BACKENDS", "").split(",") if b.strip()}


def require_backend(name: str) -> None:
    """Skip when ``name``'s framework is missing, unless UPSAMPLE_REQUIRE_BACKENDS lists it (CI)."""
    if backends.installed(name):
        return
    required = required_backends()
    extra = backends.BACKENDS[name].extra
    message = f'backend {name!r} is not installed: pip install "upsample[{extra}]"'
    if name in required or ("flax" in required and name == "nnx"):
        pytest.fail(message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)")
    pytest.skip(message)


def require_library(name: str) -> Any:
    """The test-only library ``name`` (``monai``, ``diffusers``: the blocks ``from_native`` reads), imported; skipped
    when missing, unless UPSAMPLE_REQUIRE_BACKENDS lists it (CI installs both)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed (test-only: .ci/run installs it with --no-deps)"
        if name in required_backends():
            pytest.fail(message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)")
        pytest.skip(message)


def assert_close(
    actual: Any, expected: Any, what: str, spec: upsample.UpsampleSpec, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """``np.testing.assert_allclose`` that prints the spec as JSON so a failure can be replayed."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}; spec {spec.to_json()}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=f"{what}; spec {spec.to_json()}")


def random_weights(spec: upsample.UpsampleSpec, seed: int) -> upsample.Weights:
    """Seeded canonical weights with a non-zero bias (init_weights starts biases at zero)."""
    weights = upsample.init_weights(spec, seed=seed)
    bias = None
    if spec.use_bias:
        bias = np.random.default_rng(seed).normal(size=spec.out_channels).astype(np.float32)
    return upsample.Weights(weights.kernel, bias, weights.skip)


def random_input(spec: upsample.UpsampleSpec, batch: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """A float32 NHWC input."""
    return np.random.default_rng(seed + 1).normal(size=(batch, *size, spec.in_channels)).astype(np.float32)


def _paddings(k: int, s: int) -> list[dict[str, Any]]:
    """Every padding form for one (k, s): torch (p, op), Keras same/valid with and without op, crops."""
    forms: list[dict[str, Any]] = [
        {"padding": 0},
        {"padding": "same"},
        {"padding": "valid"},
        {"padding": ((1, -1), (0, 2))},  # asymmetric, negative
        {"padding": ((-2, 0), (1, -1))},
    ]
    if k > 1:
        forms.append({"padding": 1, "output_padding": min(1, s - 1)})
    if s > 1:
        forms.append({"padding": "same", "output_padding": 1})
        forms.append({"padding": "valid", "output_padding": s - 1})
    forms.append({"padding": 0, "output_padding": s})  # output_padding >= stride: not native in torch
    return forms


def sweep() -> list[tuple[upsample.UpsampleSpec, tuple[int, int]]]:
    """Fixed cases: k 1..5, s 1..4, every padding form, input 1x1 and 3x5, non-square kernels and
    strides, residual modes cycling. Cases whose output would be empty are left out."""
    residuals = itertools.cycle([None, "nearest", "projection"])
    inputs = itertools.cycle([(1, 1), (3, 5)])
    out: list[tuple[upsample.UpsampleSpec, tuple[int, int]]] = []
    for k, s in itertools.product(range(1, 6), range(1, 5)):
        for form in _paddings(k, s):
            residual = next(residuals)
            c_out = 3 if residual == "nearest" else 4
            spec = upsample.UpsampleSpec(3, c_out, kernel_size=k, stride=s, residual=residual, **form)
            _append_if_valid(out, spec, next(inputs))
    for k, s in [((2, 3), (1, 2)), ((5, 1), (3, 1)), ((1, 4), (4, 2)), ((3, 4), (2, 3))]:
        for form in (
            {"padding": "same"},
            {"padding": (1, 0), "output_padding": (0, 1)},
            {"padding": ((0, 1), (-1, 2))},
        ):
            for size in ((1, 1), (2, 3)):
                spec = upsample.UpsampleSpec(
                    2, 3, kernel_size=k, stride=s, residual=next(residuals) and "projection", **form
                )
                _append_if_valid(out, spec, size)
    return out


def _append_if_valid(out: list, spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    try:
        spec.output_size(size)
    except ValueError:
        return
    out.append((spec, size))


def sweep_ids() -> list[str]:
    return [f"{s.kernel_size}-{s.stride}-{s.crops}-{s.residual}-{size}".replace(" ", "") for s, size in sweep()]


@st.composite
def specs(draw: st.DrawFn, max_kernel: int = 6, max_channels: int = 17) -> upsample.UpsampleSpec:
    """Any valid spec: kernel 1..6, stride 1..4, every padding form, output_padding, non-square."""
    pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731
    k, s = draw(pair(1, max_kernel)), draw(pair(1, 4))
    residual = draw(st.sampled_from([None, "nearest", "projection"]))
    c_in = draw(st.integers(1, max_channels))
    c_out = c_in if residual == "nearest" else draw(st.integers(1, max_channels))
    form = draw(st.sampled_from(["torch", "same", "valid", "crops"]))
    op = draw(st.none() | pair(0, 3))
    if form == "torch":
        padding: Any = draw(pair(0, 3))
    elif form == "crops":
        padding = draw(st.tuples(pair(-2, 3), pair(-2, 3)))
    else:
        padding = form
    return upsample.UpsampleSpec(
        c_in,
        c_out,
        kernel_size=k,
        stride=s,
        padding=padding,
        output_padding=op,
        residual=residual,
        use_bias=draw(st.booleans()),
    )


@st.composite
def cases(draw: st.DrawFn, max_input: int = 7) -> tuple[upsample.UpsampleSpec, tuple[int, int], int, int]:
    """``(spec, input_size, batch, seed)``: a 1x1 input in about half the cases, else up to 7x7."""
    spec = draw(specs())
    if draw(st.booleans()):
        size = (1, 1)
    else:
        size = (draw(st.integers(1, max_input)), draw(st.integers(1, max_input)))
    try:
        spec.output_size(size)
    except ValueError:
        from hypothesis import assume

        assume(False)
    return spec, size, draw(st.integers(1, 4)), draw(st.integers(0, 2**31 - 1))
