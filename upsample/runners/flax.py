"""Flax runner (see :mod:`upsample.runners`), for linen (``api="linen"``) and NNX (``api="nnx"``).

Both APIs are reduced to a pure function ``(params, x) -> y`` over the parameter pytree, which
``jax.vjp`` differentiates and ``jax.jit`` compiles; gradients come back as a pytree of the same
structure and are read with the adapter's ``get_weights``, like the parameters themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from upsample import geometry
from upsample.backends import flax as adapter
from upsample.check import Outcome
from upsample.runners import seconds_per_call
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

Pure = Callable[[Any, Any], Any]


def _pure(
    spec: UpsampleSpec, weights: Weights, api: str, fast_path: bool
) -> tuple[Pure, Any, Callable[[Any], Weights]]:
    """``(fn(params, x), params, grads -> canonical Weights)`` for one API."""
    if api == "linen":
        module = adapter.Upsample(spec, fast_path=fast_path)
        params = adapter.to_variables(spec, weights)["params"]
        return (
            (lambda p, x: module.apply({"params": p}, x)),
            params,
            lambda g: adapter.get_weights((module, {"params": g})),
        )
    layer = adapter.build(spec, weights=weights, api="nnx", fast_path=fast_path)
    graph, state = nnx.split(layer, nnx.Param)
    return (lambda p, x: nnx.merge(graph, p)(x)), state, lambda g: adapter.get_weights(nnx.merge(graph, g))


def _step(fn: Pure, params: Any, x: Any, grad_y: Any) -> tuple[Any, tuple[Any, Any]]:
    """``y`` and the gradients of ``<y, grad_y>`` (``y`` too: for a linear layer XLA would otherwise drop
    the whole forward pass from a compiled backward)."""
    y, backward = jax.vjp(fn, params, x)
    return y, backward(grad_y)


_vjp = jax.jit(_step, static_argnums=0)


def run(
    spec: UpsampleSpec,
    weights: Weights,
    x: np.ndarray,
    grad_y: np.ndarray,
    *,
    api: str = "linen",
    fast_path: bool = True,
    repeats: int = 5,
) -> Outcome:
    fn, params, as_weights = _pure(spec, weights.astype(np.float32), api, fast_path)
    inputs = jnp.asarray(x, dtype=jnp.float32)
    # one compile for the whole step: far cheaper than op-by-op eager dispatch on new shapes
    y, (grad_params, grad_x) = _vjp(fn, params, inputs, jnp.asarray(grad_y, dtype=jnp.float32))
    compiled = jax.jit(fn)
    seconds = (
        seconds_per_call(lambda: compiled(params, inputs).block_until_ready(), repeats) if repeats else float("nan")
    )
    return Outcome(
        np.asarray(y, np.float64), np.asarray(grad_x, np.float64), as_weights(grad_params).astype(np.float64), seconds
    )


def bench_callables(
    spec: UpsampleSpec, batch: int, input_size: int, *, api: str = "linen"
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    from upsample.weights import init_weights

    weights = init_weights(spec, seed=0)
    x = jax.random.normal(jax.random.key(0), (batch, input_size, input_size, spec.in_channels))
    ours, params, _ = _pure(spec, weights, api, fast_path=True)
    pads = tuple(geometry.crop_to_lax(spec.crops[a], spec.kernel_size[a]) for a in (0, 1))
    conv = nn.ConvTranspose(spec.out_channels, spec.kernel_size, spec.stride, padding=pads, use_bias=spec.use_bias)
    native_params = conv.init(jax.random.key(1), x)["params"]
    kh, kw = spec.kernel_size
    rows = x.reshape(-1, spec.in_channels)
    matrix = jax.random.normal(jax.random.key(2), (spec.in_channels, spec.out_channels * kh * kw))

    def pair(fn: Pure, p: Any, inputs: Any) -> tuple[Callable[[], object], Callable[[], object]]:
        # grad_y is an argument, not a captured constant XLA could fold into the gradient
        grad_y = jax.random.normal(jax.random.key(3), fn(p, inputs).shape)
        forward = jax.jit(fn)
        backward = jax.jit(functools.partial(_step, fn))
        return (
            (lambda: forward(p, inputs).block_until_ready()),
            (lambda: jax.block_until_ready(backward(p, inputs, grad_y))),
        )

    return {
        "native": pair(lambda p, xs: conv.apply({"params": p}, xs), native_params, x),
        "ours": pair(ours, params, x),
        "matmul": pair(lambda m, xs: xs @ m, matrix, rows),
    }
