"""Porting trained layers between frameworks through canonical weights and safetensors files, and
importing native layers from users' models into every other framework.

Every direction is covered: each of torch, Keras (this process's ``KERAS_BACKEND``), Flax linen and
Flax NNX trains a layer for a few steps, and every framework (the source included) rebuilt from the
result must give the trained layer's own outputs. Run once per Keras backend by
tests/test_keras_backends.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cases import assert_close, random_input, random_weights, require_backend

from upsample import UpsampleSpec, Weights, load_weights, reference, save_weights

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
BACKENDS = ("torch", "keras", "flax", "nnx")
# Keras "same" with k - s odd: torch cannot express it natively, so its slicing path is exercised.
SPEC = UpsampleSpec(3, 4, kernel_size=3, stride=2, padding="same", residual="projection")
STEPS, LEARNING_RATE = 5, 0.05


@pytest.fixture(scope="module", autouse=True)
def frameworks() -> None:
    for name in BACKENDS:
        require_backend(name)


def data(spec: UpsampleSpec, size: tuple[int, int] = (2, 3)) -> tuple[np.ndarray, np.ndarray]:
    x = random_input(spec, 4, size, seed=5)
    target = np.random.default_rng(9).normal(size=(4, *spec.output_size(size), spec.out_channels)).astype(np.float32)
    return x, target


def output_in(backend: str, spec: UpsampleSpec, weights: Weights, x: np.ndarray) -> np.ndarray:
    """NHWC output of ``spec.build(backend, weights=weights)`` on NHWC ``x``, each called natively."""
    layer = spec.build(backend, weights=weights)
    if backend == "torch":
        import torch

        with torch.no_grad():
            return layer(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    if backend == "keras":
        import keras

        return keras.ops.convert_to_numpy(layer(x))
    return np.asarray(layer(x))


# --- training a few steps in each framework ---------------------------------------------------


def train_torch(spec: UpsampleSpec, weights: Weights, x: np.ndarray, target: np.ndarray) -> tuple[Weights, np.ndarray]:
    import torch

    from upsample.backends import torch as adapter

    layer = adapter.Upsample(spec, weights=weights)
    inputs, goal = (torch.from_numpy(a.transpose(0, 3, 1, 2).copy()) for a in (x, target))
    optimizer = torch.optim.SGD(layer.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.mean((layer(inputs) - goal) ** 2).backward()
        optimizer.step()
    with torch.no_grad():
        y = layer(inputs).numpy().transpose(0, 2, 3, 1)
    return adapter.get_weights(layer), y


def train_keras(spec: UpsampleSpec, weights: Weights, x: np.ndarray, target: np.ndarray) -> tuple[Weights, np.ndarray]:
    import keras

    from upsample.backends import keras as adapter

    layer = adapter.Upsample(spec, weights=weights)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    model.fit(x, target, epochs=STEPS, batch_size=len(x), verbose=0, shuffle=False)
    return adapter.get_weights(layer), keras.ops.convert_to_numpy(model(x))


def train_linen(spec: UpsampleSpec, weights: Weights, x: np.ndarray, target: np.ndarray) -> tuple[Weights, np.ndarray]:
    import jax
    import jax.numpy as jnp
    import optax

    from upsample.backends import flax as adapter

    module = adapter.Upsample(spec)
    params = adapter.to_variables(spec, weights)["params"]
    optimizer = optax.sgd(LEARNING_RATE)
    state = optimizer.init(params)

    def loss(p: dict) -> jax.Array:
        return jnp.mean((module.apply({"params": p}, x) - target) ** 2)

    for _ in range(STEPS):
        updates, state = optimizer.update(jax.grad(loss)(params), state)
        params = optax.apply_updates(params, updates)
    return adapter.get_weights((module, {"params": params})), np.asarray(module.apply({"params": params}, x))


def train_nnx(spec: UpsampleSpec, weights: Weights, x: np.ndarray, target: np.ndarray) -> tuple[Weights, np.ndarray]:
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from upsample.backends import flax as adapter

    layer = adapter.build(spec, weights=weights, api="nnx")
    optimizer = nnx.Optimizer(layer, optax.sgd(LEARNING_RATE), wrt=nnx.Param)
    for _ in range(STEPS):
        grads = nnx.grad(lambda model: jnp.mean((model(x) - target) ** 2))(layer)
        optimizer.update(layer, grads)
    return adapter.get_weights(layer), np.asarray(layer(x))


TRAINERS: dict[str, Callable[..., tuple[Weights, np.ndarray]]] = {
    "torch": train_torch,
    "keras": train_keras,
    "flax": train_linen,
    "nnx": train_nnx,
}


@pytest.mark.parametrize("source", BACKENDS)
def test_trained_layer_moves_to_every_framework(source: str, tmp_path: Path) -> None:
    x, target = data(SPEC)
    initial = random_weights(SPEC, 0)
    trained, y_source = TRAINERS[source](SPEC, initial, x, target)
    assert not trained.allclose(initial, rtol=1e-3), f"{source}: training did not change the weights"
    # the source's own get_weights is exact: the reference with the exported weights reproduces it
    assert_close(y_source, reference.forward(SPEC, trained, x), f"{source}: own output vs reference", SPEC)

    path = tmp_path / f"{source}.safetensors"
    save_weights(path, SPEC, trained)
    loaded_spec, loaded = load_weights(path)
    assert loaded_spec == SPEC
    for destination in BACKENDS:
        assert_close(output_in(destination, SPEC, trained, x), y_source, f"{source} -> {destination} (weights)", SPEC)
        assert_close(
            output_in(destination, loaded_spec, loaded, x), y_source, f"{source} -> {destination} (file)", SPEC
        )


def test_one_by_one_input_ports_too() -> None:
    spec = UpsampleSpec.for_size(5, 6, out_channels=3, residual="projection")
    x, target = data(spec, (1, 1))
    trained, y_source = train_torch(spec, random_weights(spec, 1), x, target)
    for destination in BACKENDS:
        assert_close(output_in(destination, spec, trained, x), y_source, f"torch -> {destination}", spec)


# --- native layers from users' models ---------------------------------------------------------

TORCH_NATIVE = [(1, 1, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), ((2, 3), (3, 1), (0, 1), (2, 0))]


@pytest.mark.parametrize(("k", "s", "p", "op"), TORCH_NATIVE)
def test_torch_native_layer_rebuilt_everywhere(k: object, s: object, p: object, op: object) -> None:
    import torch

    from upsample.backends import torch as adapter

    torch.manual_seed(3)
    conv = torch.nn.ConvTranspose2d(3, 4, k, s, p, op)
    torch.nn.init.normal_(conv.bias)
    x = random_input(UpsampleSpec(3), 2, (3, 2), seed=4)
    with torch.no_grad():
        y_native = conv(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    spec, weights = adapter.from_native(conv)
    for destination in BACKENDS:
        assert_close(output_in(destination, spec, weights, x), y_native, f"torch native -> {destination}", spec)


KERAS_NATIVE = [
    (3, 2, "same", None),
    (3, 2, "valid", None),
    (4, 2, "same", 1),
    (2, 3, "valid", None),
    (5, 1, "same", 0),
]


@pytest.mark.parametrize(("k", "s", "padding", "op"), KERAS_NATIVE)
def test_keras_native_layer_rebuilt_everywhere(k: int, s: int, padding: str, op: int | None) -> None:
    import keras

    from upsample.backends import keras as adapter

    keras.utils.set_random_seed(3)
    conv = keras.layers.Conv2DTranspose(
        4, k, strides=s, padding=padding, output_padding=op, bias_initializer="random_normal"
    )
    x = random_input(UpsampleSpec(3), 2, (3, 2), seed=4)
    y_native = keras.ops.convert_to_numpy(conv(x))
    spec, weights = adapter.from_native(conv)
    for destination in BACKENDS:
        assert_close(output_in(destination, spec, weights, x), y_native, f"keras native -> {destination}", spec)


FLAX_NATIVE = [("SAME", False), ("VALID", True), (((1, 2), (0, 3)), False), (((2, 0), (1, 1)), True)]


@pytest.mark.parametrize(("padding", "transpose_kernel"), FLAX_NATIVE)
def test_flax_native_layer_rebuilt_everywhere(padding: object, transpose_kernel: bool) -> None:
    import flax.linen as nn
    import jax

    from upsample.backends import flax as adapter

    conv = nn.ConvTranspose(
        4,
        (3, 2),
        strides=(2, 3),
        padding=padding,
        transpose_kernel=transpose_kernel,
        bias_init=nn.initializers.normal(1.0),
    )
    x = random_input(UpsampleSpec(3), 2, (3, 2), seed=4)
    params = conv.init(jax.random.key(0), x)
    y_native = np.asarray(conv.apply(params, x))
    spec, weights = adapter.from_native(conv, params)
    for destination in BACKENDS:
        assert_close(output_in(destination, spec, weights, x), y_native, f"flax native -> {destination}", spec)
