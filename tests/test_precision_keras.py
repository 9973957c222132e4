"""Keras mixed precision (``dtype="mixed_bfloat16"`` / ``"mixed_float16"`` policies), issue 19, in this
process's ``KERAS_BACKEND``: on every code path (tests/precision_cases.py ``CASES``) our layer computes in
the policy's compute dtype where Keras's own layers do (``Conv2DTranspose``, ``Conv2D``, ``Add`` under the
same policy), keeps float32 variables and float32 gradients for them, and agrees with the float64 NumPy
reference and its VJP within ``TOLERANCE`` (docs/training-at-scale.md prints the same table).

Run once per Keras backend by tests/test_keras_backends.py (listed in ``conftest.PER_KERAS_BACKEND``);
by hand: ``UPSAMPLE_KERAS_CHILD=1 KERAS_BACKEND=jax pytest tests/test_precision_keras.py``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

if os.environ.get("UPSAMPLE_KERAS_CHILD") != "1":
    pytest.skip("run once per Keras backend by tests/test_keras_backends.py", allow_module_level=True)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from test_keras_backends import require_keras_backend  # noqa: E402

try:
    require_keras_backend(os.environ["KERAS_BACKEND"])
except pytest.skip.Exception as skipped:
    pytest.skip(str(skipped), allow_module_level=True)

import keras  # noqa: E402
from precision_cases import CASES, LOW_DTYPES, TOLERANCE, assert_all_within, case_inputs, reference_results  # noqa: E402

import upsample  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402

BACKEND = keras.backend.backend()
SEED = 3
pytestmark = [
    # Keras's convert_to_numpy calls np.array() on framework tensors whose __array__ predates NumPy 2's copy keyword.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning"),  # fast-path-pad has dead pixels on purpose
]


def value_and_grads(layer: keras.layers.Layer, x: np.ndarray, grad_y: np.ndarray) -> tuple[Any, Any, list[Any]]:
    """``(y, grad_x, variable gradients)`` of ``sum(float32(layer(x)) * grad_y)`` by the backend's autodiff
    (the loss in float32, as Keras computes losses under a mixed policy)."""
    variables = list(layer.trainable_variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x_t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            y = layer(x_t)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * grad_y)
        grad_x, grads = tape.gradient(loss, [x_t, [v.value for v in variables]])
        return y, grad_x, grads
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        # Through a model, as Keras's JAX trainer runs it: the layer's own stateless_call would skip the
        # __call__ that applies the dtype policy (input cast, autocast of the variables).
        model = keras.Sequential([keras.Input(x.shape[1:]), layer])

        def loss(values: list[Any], x_j: Any) -> tuple[Any, Any]:
            y_j = model.stateless_call(values, [v.value for v in model.non_trainable_variables], x_j)[0]
            return jnp.sum(y_j.astype(jnp.float32) * grad_y), y_j

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (_, y), (grads, grad_x) = step([v.value for v in variables], x)
        return y, grad_x, grads
    import torch

    x_t = torch.tensor(x, requires_grad=True)
    y = layer(x_t)
    grad_x, *grads = torch.autograd.grad((y.float() * torch.tensor(grad_y)).sum(), [x_t, *(v.value for v in variables)])
    return y, grad_x, grads


def native_dtype(spec: Any, x: np.ndarray, policy: str) -> str:
    """The dtype Keras's own layers give for this layer's function under ``policy``: ``Conv2DTranspose``
    (transposed kind) or ``Conv2D`` (sub-pixel, resize), plus (``Add``) the input (identity skip) or a 1x1
    ``Conv2D`` of it (projection skip). Pixel shuffle, resize and crops keep the dtype."""
    if isinstance(spec, upsample.UpsampleSpec):
        conv = keras.layers.Conv2DTranspose(spec.out_channels, spec.kernel_size, spec.stride, dtype=policy)
    else:
        conv = keras.layers.Conv2D(spec.conv_channels, spec.kernel_size, padding="same", dtype=policy)
    y = conv(x)
    if spec.residual is not None:
        skip = x if spec.residual == "nearest" else keras.layers.Conv2D(spec.out_channels, 1, dtype=policy)(x)
        y = keras.layers.Add(dtype=policy)([y[:, :1, :1, :1], skip[:, :1, :1, :1]])
    return keras.backend.standardize_dtype(y.dtype)


def numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32")), dtype=np.float64)


def canonical_gradients(spec: Any, layer: keras.layers.Layer, grads: list[Any]) -> upsample.Weights:
    """The variables' gradients in the canonical layout, converted by the adapter's own ``get_weights``."""
    twin = spec.build("keras", data_format="channels_last")
    for variable, grad in zip(twin.trainable_variables, grads, strict=True):
        variable.assign(numpy(grad))
    return uk.get_weights(twin)


@pytest.mark.parametrize("dtype", LOW_DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_mixed_precision_policy(name: str, dtype: str) -> None:
    spec, weights, x, grad_y = case_inputs(name, SEED)
    policy = f"mixed_{dtype}"
    layer = spec.build("keras", weights=weights, data_format="channels_last", dtype=policy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)
        y, grad_x, grads = value_and_grads(layer, x, grad_y)
    got = (numpy(y), numpy(grad_x), canonical_gradients(spec, layer, grads))
    assert_all_within(got, reference_results(spec, weights, x, grad_y), TOLERANCE[(f"keras/{BACKEND}", dtype)])
    assert {v.dtype for v in layer.weights} == {"float32"}, "variables must stay float32"
    assert {keras.backend.standardize_dtype(g.dtype) for g in grads} == {"float32"}
    expected = native_dtype(spec, x, policy)
    got = keras.backend.standardize_dtype(y.dtype)
    assert got == expected == dtype, f"output {got}, Keras's own layers give {expected} under {policy}"
