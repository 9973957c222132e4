"""Flax runner (see :mod:`upsample.runners`), for linen (``api="linen"``) and NNX (``api="nnx"``).

Both APIs are reduced to a pure function ``(params, x) -> y`` over the parameter pytree, which
``jax.vjp`` differentiates and ``jax.jit`` compiles; gradients come back as a pytree of the same
structure and are read with the adapter's ``get_weights``, like the parameters themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from upsample import geometry, resize_table
from upsample.backends import flax as adapter
from upsample.backends.flax import head as heads
from upsample.backends.flax.conv import pixel_shuffle
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.crosscheck import HeadOutcome, Outcome, trainable
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights
from upsample.runners import matmul_shape, seconds_per_call
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

Pure = Callable[[Any, Any], Any]


def _pure(
    spec: UpsampleSpec, weights: Weights, api: str, fast_path: bool
) -> tuple[Pure, Any, Callable[[Any], Weights]]:
    """``(fn(params, x), params, grads -> canonical Weights)`` for one API."""
    if api == "linen":
        module, variables = adapter.build(spec, weights=weights, api="linen", fast_path=fast_path).unbind()
        return (
            (lambda p, x: module.apply({"params": p}, x)),
            variables["params"],
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


def head_stepper(api: str, training: bool) -> Callable[[Any, Any, Any], tuple[Any, Any, HeadWeights, Any]]:
    """``step(head, x, grad_y) -> (y, grad_x, canonical gradients, head with updated statistics)`` for the loss
    ``sum(y * grad_y)`` of a built head (a bound linen ``Head`` or a ``HeadNNX``), compiled once per stepper."""
    if api == "linen":

        @functools.partial(jax.jit, static_argnums=0)
        def linen_step(module: Any, params: Any, stats: Any, xs: Any, grad_y: Any) -> Any:
            def loss(p: Any, x: Any) -> tuple[Any, Any]:
                y, updates = module.apply({"params": p, **stats}, x, train=training, mutable=["batch_stats"])
                return jnp.sum(y * grad_y), (y, updates)

            return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs)

        def run_linen(head: Any, x: Any, grad_y: Any) -> tuple[Any, Any, HeadWeights, Any]:
            module, variables = head.unbind()
            stats = {key: value for key, value in variables.items() if key != "params"}
            (_, (y, updates)), (grads, grad_x) = linen_step(module, variables["params"], stats, x, grad_y)
            canonical = heads.get_weights((module, {**variables, "params": grads}))
            return y, grad_x, canonical, module.bind({**variables, **updates})

        return run_linen

    @nnx.jit
    def nnx_step(model: Any, xs: Any, grad_y: Any) -> Any:
        def loss(m: Any, x: Any) -> tuple[Any, Any]:
            y = m(x)
            return jnp.sum(y * grad_y), y

        return nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(model, xs)

    def run_nnx(head: Any, x: Any, grad_y: Any) -> tuple[Any, Any, HeadWeights, Any]:
        head.train() if training else head.eval()
        (_, y), (grads, grad_x) = nnx_step(head, x, grad_y)
        holder = heads.build(head.spec, weights=heads.get_weights(head), api="nnx")
        nnx.update(holder, grads)
        return y, grad_x, heads.get_weights(holder), head

    return run_nnx


def train_head(
    spec: HeadSpec,
    weights: HeadWeights,
    data: Sequence[tuple[np.ndarray, np.ndarray]],
    learning_rate: float,
    *,
    api: str = "linen",
) -> HeadOutcome:
    head = heads.build(spec, weights=weights.astype(np.float32), api=api)
    y_eval, _, _, head = head_stepper(api, False)(head, data[0][0], data[0][1])
    step = head_stepper(api, True)
    first = None
    for x, grad_y in data:
        y, grad_x, grads, head = step(head, jnp.asarray(x, jnp.float32), jnp.asarray(grad_y, jnp.float32))
        if first is None:
            first = (np.asarray(y, np.float64), np.asarray(grad_x, np.float64), trainable(grads))
        moved = {
            name: array - learning_rate * grads.flat()[name] if ".running_" not in name else array
            for name, array in heads.get_weights(head).flat().items()
        }
        head = heads.set_weights(head, HeadWeights.from_flat(spec, moved))
    assert first is not None
    return HeadOutcome(*first, np.asarray(y_eval, np.float64), heads.get_weights(head).astype(np.float64).flat())


def _native(spec: Any, x: Any) -> tuple[Pure, Any]:
    """Flax's own layers for the same computation, ``(fn(params, x), params)``: a ``ConvTranspose`` (grouped: XLA's
    grouped convolution of the zero-dilated input, which ``ConvTranspose`` runs too, Flax having no grouped one); a
    ``Conv`` and a reshape (Flax has no pixel shuffle op); ``jax.image.resize`` (its method of the spec's, or one of the
    same method: ``resize_table.baseline``) and a ``Conv``. Any rank."""
    if isinstance(spec, SubpixelSpec | ResizeSpec):
        conv = nn.Conv(
            spec.conv_channels,
            spec.kernel_size,
            padding="SAME",
            kernel_dilation=spec.dilation,
            feature_group_count=spec.groups,
            use_bias=spec.use_bias,
        )
        if isinstance(spec, SubpixelSpec):

            def subpixel(p: Any, xs: Any) -> Any:
                return pixel_shuffle(conv.apply({"params": p}, xs), spec.scale, spec.out_channels)

            return subpixel, conv.init(jax.random.key(1), x)["params"]

        row = resize_table.baseline(resize_table.JAX, spec.interpolation, spec.spatial_dims)
        assert row is not None  # JAX has all three methods at every rank
        method = str(dict(row.options)["method"])

        def resize(xs: Any) -> Any:
            batch, *size, channels = xs.shape
            resized = spec.output_size(tuple(size))
            return jax.image.resize(xs, (batch, *resized, channels), method)

        return (lambda p, xs: conv.apply({"params": p}, resize(xs))), conv.init(jax.random.key(1), resize(x))["params"]
    pads = tuple(geometry.crop_to_lax(crop, e) for crop, e in zip(spec.crops, spec.extent, strict=True))
    if spec.groups > 1:  # Flax has no grouped ConvTranspose: XLA's grouped convolution of the zero-dilated input
        kernel = jax.random.normal(
            jax.random.key(1), (*spec.kernel_size, spec.in_channels // spec.groups, spec.out_channels)
        )
        axes = "DHW"[-spec.spatial_dims :]

        def grouped(p: Any, xs: Any) -> Any:
            return jax.lax.conv_general_dilated(
                xs,
                p,
                (1,) * spec.spatial_dims,
                pads,
                lhs_dilation=spec.stride,
                rhs_dilation=spec.dilation,
                dimension_numbers=("N" + axes + "C", axes + "IO", "N" + axes + "C"),
                feature_group_count=spec.groups,
            )

        return grouped, kernel
    transposed = nn.ConvTranspose(
        spec.out_channels,
        spec.kernel_size,
        spec.stride,
        padding=pads,
        kernel_dilation=spec.dilation,
        use_bias=spec.use_bias,
    )
    return (lambda p, xs: transposed.apply({"params": p}, xs)), transposed.init(jax.random.key(1), x)["params"]


def bench_callables(
    spec: Any, batch: int, input_size: int, *, api: str = "linen"
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    from upsample.weights import init_weights

    weights = init_weights(spec, seed=0)
    x = jax.random.normal(jax.random.key(0), (batch, *(input_size,) * spec.spatial_dims, spec.in_channels))
    ours, params, _ = _pure(spec, weights, api, fast_path=True)
    native, native_params = _native(spec, x)
    m, k, n = matmul_shape(spec, batch, input_size)
    rows = jax.random.normal(jax.random.key(2), (m, k))
    matrix = jax.random.normal(jax.random.key(2), (k, n))

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
        "native": pair(native, native_params, x),
        "ours": pair(ours, params, x),
        "matmul": pair(lambda m, xs: xs @ m, matrix, rows),
    }


def generator_step_callables(
    specs: Sequence[Any], batch: int, *, api: str = "linen"
) -> dict[str, Callable[[], object]]:
    """One SGD step of a head of ``specs`` (ReLU between stages, Tanh at the end) from a one-pixel
    ``(batch, 1, ..., 1, C)`` latent, jitted as a JAX user writes it: ``{"native": Flax's own layers, "ours": our
    layers}``."""
    from upsample.weights import init_weights

    size: tuple[int, ...] = (1,) * specs[0].spatial_dims
    x = jax.random.normal(jax.random.key(0), (batch, *size, specs[0].in_channels))
    native, ours = [], []
    for spec in specs:
        inputs = jnp.zeros((1, *size, spec.in_channels))
        native.append(_native(spec, inputs))
        ours.append(_pure(spec, init_weights(spec, seed=0), api, fast_path=True)[:2])
        size = spec.output_size(size)

    def step(layers: list[tuple[Pure, Any]]) -> Callable[[], object]:
        functions = [fn for fn, _ in layers]

        def loss(params: list[Any]) -> Any:
            y = x
            for index, (fn, p) in enumerate(zip(functions, params, strict=True)):
                y = fn(p, y)
                y = jnp.tanh(y) if index == len(functions) - 1 else jax.nn.relu(y)
            return jnp.mean(y**2)

        @jax.jit
        def update(params: list[Any]) -> tuple[list[Any], Any]:
            value, grads = jax.value_and_grad(loss)(params)
            return jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, params, grads), value

        state = {"params": [p for _, p in layers]}

        def one() -> object:
            state["params"], value = update(state["params"])
            return value.block_until_ready()

        return one

    return {"native": step(native), "ours": step(ours)}
