"""Keras runner (see :mod:`upsample.runners`), on this process's ``KERAS_BACKEND``.

Keras has no backend-neutral gradient, so :func:`_differentiate` and :func:`_compile` dispatch to the
backend's own autodiff and compiler (``tf.GradientTape``/``tf.function``, ``jax.grad``/``jax.jit``,
``torch.autograd``). Every variant is a pure function of ``(values, x)`` through ``stateless_call``,
so native layer, ours and the matmul are compiled and differentiated the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from upsample import geometry, resize_table
from upsample.backends import keras as adapter
from upsample.backends.keras import head as heads
from upsample.backends.keras.common import native as native_layer
from upsample.backends.keras.conv import gather_resize, resize_layer, shuffle_crd
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.crosscheck import HeadOutcome, Outcome, trainable
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights
from upsample.runners import matmul_shape, seconds_per_call
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

Pure = Callable[[Sequence[Any], Any], Any]

LAST = "channels_last"
"""Every layer here takes channels-last arrays (``(N, *spatial, C)``), whatever ``keras.config.image_data_format()``
says."""


def _pure(layer: keras.layers.Layer, fixed: Sequence[Any] = (), **call_kwargs: Any) -> Pure:
    """``(trainable values, x) -> (y, updated non-trainable values)`` for a built layer whose non-trainable
    values are ``fixed``."""
    return lambda values, x: layer.stateless_call(list(values), list(fixed), x, **call_kwargs)


def _differentiate(fn: Pure, values: Sequence[Any], x: Any, grad_y: Any) -> tuple[Any, Any, list[Any], Any]:
    """``y``, ``d<y, grad_y>/dx``, the gradients of ``values`` and ``fn``'s second result, by the backend's
    autodiff (``fn(values, x) -> (y, aux)``)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        values = [tf.convert_to_tensor(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch([x, *values])
            y, aux = fn(values, x)
            loss = tf.reduce_sum(y * grad_y)
        grad_x, *grads = tape.gradient(loss, [x, *values])
        return y, grad_x, grads, aux
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(vs: Sequence[Any], xs: Any) -> tuple[Any, Any]:
            y, aux = fn(vs, xs)
            return jnp.sum(y * grad_y), (y, aux)

        # one compile for the whole step: far cheaper than JAX's op-by-op eager dispatch on new shapes
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (_, (y, aux)), (grads, grad_x) = step(list(values), x)
        return y, grad_x, list(grads), aux
    if backend == "torch":
        import torch

        x = torch.as_tensor(x).requires_grad_(True)
        values = [torch.as_tensor(v).detach().requires_grad_(True) for v in values]
        y, aux = fn(values, x)
        grad_x, *grads = torch.autograd.grad((y * torch.as_tensor(grad_y)).sum(), [x, *values])
        return y, grad_x, grads, aux
    raise NotImplementedError(f"no gradient for Keras backend {backend!r}")


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The backend's compiler where it has one that users reach for (tf.function, jax.jit)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _block(result: Any) -> Any:
    """Wait for asynchronous backends (JAX) to finish computing ``result``."""
    for leaf in result if isinstance(result, (tuple, list)) else (result,):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
    return result


def _as_weights(layer: keras.layers.Layer, grads: Sequence[Any]) -> Any:
    """Gradients in the canonical layout: put into the (disposable) layer's variables, read with get_weights
    (Weights, or HeadWeights for a head)."""
    for variable, grad in zip(layer.trainable_variables, grads, strict=True):
        variable.assign(keras.ops.convert_to_numpy(grad))
    return adapter.get_weights(layer).astype(np.float64)


def run(
    spec: UpsampleSpec,
    weights: Weights,
    x: np.ndarray,
    grad_y: np.ndarray,
    *,
    fast_path: bool = True,
    repeats: int = 5,
) -> Outcome:
    layer = adapter.build(spec, weights=weights.astype(np.float32), fast_path=fast_path, data_format=LAST)
    x = x.astype(np.float32)
    layer.build(x.shape)
    values = [v.value for v in layer.trainable_variables]
    y, grad_x, grads, _ = _differentiate(_pure(layer), values, x, grad_y.astype(np.float32))
    numpy = keras.ops.convert_to_numpy
    seconds = seconds_per_call(lambda: _block(layer(x)), repeats) if repeats else float("nan")
    return Outcome(numpy(y).astype(np.float64), numpy(grad_x).astype(np.float64), _as_weights(layer, grads), seconds)


def train_head(
    spec: HeadSpec, weights: HeadWeights, data: Sequence[tuple[np.ndarray, np.ndarray]], learning_rate: float
) -> HeadOutcome:
    head = heads.build(spec, weights=weights.astype(np.float32), data_format=LAST)
    # the holder reads gradients in the canonical layout
    holder = heads.build(spec, weights=weights.astype(np.float32), data_format=LAST)
    numpy = keras.ops.convert_to_numpy
    y_eval = numpy(head(data[0][0].astype(np.float32), training=False))
    first = None
    for x, grad_y in data:
        values = [v.value for v in head.trainable_variables]
        fn = _pure(head, [v.value for v in head.non_trainable_variables], training=True)
        y, grad_x, grads, updated = _differentiate(fn, values, x.astype(np.float32), grad_y.astype(np.float32))
        if first is None:
            first = (
                numpy(y).astype(np.float64),
                numpy(grad_x).astype(np.float64),
                trainable(_as_weights(holder, grads)),
            )
        for variable, grad in zip(head.trainable_variables, grads, strict=True):
            variable.assign(variable - learning_rate * numpy(grad))
        for variable, value in zip(head.non_trainable_variables, updated, strict=True):
            variable.assign(value)
    assert first is not None
    return HeadOutcome(*first, y_eval.astype(np.float64), heads.get_weights(head).astype(np.float64).flat())


def _native(spec: Any, input_shape: tuple[int, ...]) -> keras.layers.Layer:
    """Keras's own layers for the same computation, built for ``input_shape``: ``Conv{1,2,3}DTranspose`` (dense, of
    the dilated extent: Keras has no grouped one);
    ``Conv{1,2,3}D`` then ``depth_to_space`` (2-D; square scales) or our CRD shuffle (1-D, 3-D: Keras has none);
    ``UpSampling{1,2,3}D`` then ``Conv{1,2,3}D`` (in 2-D ``UpSampling2D`` of the spec's method where it computes
    another resize: ``resize_table.baseline``; a 1-D or 3-D resize Keras has no layer for is ours: gathers)."""
    rank = spec.spatial_dims
    if isinstance(spec, SubpixelSpec | ResizeSpec):
        conv = native_layer("Conv{}D", rank)(
            spec.conv_channels,
            spec.kernel_size,
            padding="same",
            dilation_rate=spec.dilation,
            groups=spec.groups,
            use_bias=spec.use_bias,
            data_format=LAST,
        )
        layers: list[Any]
        if isinstance(spec, SubpixelSpec):
            if rank == 2:
                shuffle = keras.layers.Lambda(lambda z: keras.ops.depth_to_space(z, spec.scale[0]))
            else:
                shuffle = keras.layers.Lambda(
                    lambda z: shuffle_crd(z, tuple(z.shape[1:-1]), spec.out_channels, spec.scale)
                )
            layers = [conv, shuffle]
        elif resize_layer(spec) is not None:
            layers = [resize_layer(spec), conv]
        elif rank == 2 and spec.integer_scale is None:  # Resizing to the same size, of the method (maybe not exact)
            row = resize_table.baseline(
                resize_table.KERAS_IMAGE_RESIZE, spec.interpolation, rank, keras.backend.backend()
            )
            out = spec.output_size(tuple(input_shape[1:-1]))
            layers = [keras.layers.Resizing(*out, data_format=LAST, **dict(row.options)), conv]  # type: ignore[union-attr]
        elif rank == 2 and any(factor > 1 for factor in spec.scale):  # UpSampling2D of the method (not exact)
            row = resize_table.baseline(
                resize_table.KERAS_UPSAMPLING, spec.interpolation, rank, keras.backend.backend()
            )
            layers = [keras.layers.UpSampling2D(spec.scale, data_format=LAST, **dict(row.options)), conv]  # type: ignore[union-attr]
        else:
            size = tuple(input_shape[1:-1])
            layers = [keras.layers.Lambda(lambda x: gather_resize(x, spec, size)), conv]
        return keras.Sequential([keras.Input(input_shape[1:]), *layers])
    # Keras has no grouped transposed convolution and refuses a dilated one with a stride: what a Keras user can
    # write is the dense layer of the dilated extent (the block-diagonal kernel, zeros between the taps)
    args = geometry.keras_args(spec.crops, spec.extent, spec.stride)
    native = native_layer("Conv{}DTranspose", rank)(
        spec.out_channels,
        spec.extent,
        strides=spec.stride,
        padding=args.padding,
        output_padding=args.output_padding,
        use_bias=spec.use_bias,
        data_format=LAST,
    )
    native.build(input_shape)
    return native


def bench_callables(
    spec: Any, batch: int, input_size: int
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    keras.utils.set_random_seed(0)
    x = keras.random.normal((batch, *(input_size,) * spec.spatial_dims, spec.in_channels))
    ours = adapter.build(spec, data_format=LAST)
    ours.build(x.shape)
    native = _native(spec, tuple(x.shape))
    m, k, n = matmul_shape(spec, batch, input_size)
    rows = keras.random.normal((m, k))
    matrix = keras.random.normal((k, n))

    def matmul(values: Sequence[Any], inputs: Any) -> Any:
        return keras.ops.matmul(inputs, values[0]), []

    def pair(fn: Pure, values: list[Any], inputs: Any) -> tuple[Callable[[], object], Callable[[], object]]:
        # grad_y is an argument, not a captured constant the compiler could fold into the gradient
        grad_y = keras.random.normal(tuple(fn(values, inputs)[0].shape), seed=1)
        forward = _compile(lambda vs, xs: fn(vs, xs)[0])
        backward = _compile(lambda vs, xs, gy: _differentiate(fn, vs, xs, gy))
        if keras.backend.backend() == "torch":
            import torch

            def forward_no_grad() -> object:
                with torch.no_grad():
                    return forward(values, inputs)

            return forward_no_grad, lambda: backward(values, inputs, grad_y)
        return (lambda: _block(forward(values, inputs))), (lambda: _block(backward(values, inputs, grad_y)))

    return {
        "native": pair(_pure(native), [v.value for v in native.trainable_variables], x),
        "ours": pair(_pure(ours), [v.value for v in ours.trainable_variables], x),
        "matmul": pair(matmul, [matrix], rows),
    }


def generator_step_callables(specs: Sequence[Any], batch: int) -> dict[str, Callable[[], object]]:
    """One SGD step of a head of ``specs`` (ReLU between stages, Tanh at the end) from a ``(batch, 1, .., 1, C)``
    latent (the specs' rank), as a Keras user runs it (``train_on_batch`` of a compiled ``Sequential``):
    ``{"native": Keras's own layers, "ours": our layers}``."""
    keras.utils.set_random_seed(0)
    size: tuple[int, ...] = (1,) * specs[0].spatial_dims
    x = keras.random.normal((batch, *size, specs[0].in_channels))
    native, ours = [], []
    for spec in specs:
        native.append(_native(spec, (batch, *size, spec.in_channels)))
        ours.append(adapter.build(spec, data_format=LAST))
        size = spec.output_size(size)
    target = keras.ops.zeros((batch, *size, specs[-1].out_channels))

    def step(layers: list[keras.layers.Layer]) -> Callable[[], object]:
        activations = ["relu"] * (len(layers) - 1) + ["tanh"]
        body = [
            m for layer, name in zip(layers, activations, strict=True) for m in (layer, keras.layers.Activation(name))
        ]
        model = keras.Sequential([keras.Input(x.shape[1:]), *body])
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        return lambda: model.train_on_batch(x, target)

    return {"native": step(native), "ours": step(ours)}
