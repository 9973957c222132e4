"""``keras.distribution.DataParallel`` on the JAX backend over 4 virtual CPU devices training our Keras head with
``fit``'s own step (``train_on_batch``, training mode), and the same training without a distribution:
``KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/dp_heads_keras.py OUT.npz``
(tests/test_distributed_heads.py runs it in a subprocess).

The loss is ``sum(y * grad_y)`` over the whole batch (a scalar, which Keras's reduction leaves as it is), so the
gradient is the oracle's. The trained variables, running statistics included, are checked to be replicated.
"""

from __future__ import annotations

import sys

import keras
from dp_heads_common import HEADS, JAX_HEADS, LR, batches, initial_weights, save

from upsample.backends.keras import head as heads

DEVICES = 4


def linear_loss(grad_y: object, y: object) -> object:
    """``sum(y * grad_y)``: Keras passes the batch's ``grad_y`` as the target."""
    return keras.ops.sum(y * grad_y)  # type: ignore[operator]


def train(name: str) -> keras.Model:
    spec = HEADS[name]
    head = spec.build("keras", weights=initial_weights(spec))
    model = keras.Sequential([keras.Input((*spec.input_size, spec.in_channels)), head])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss=linear_loss)
    for x, grad_y in batches(spec):
        model.train_on_batch(x, grad_y)
    return model


def main(out: str) -> None:
    assert keras.backend.backend() == "jax", "run with KERAS_BACKEND=jax: DataParallel needs the JAX backend here"
    devices = keras.distribution.list_devices()
    assert len(devices) == DEVICES, f"expected {DEVICES} devices, got {devices}"
    results = {}
    for name in JAX_HEADS:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        parallel = train(name)
        for variable in parallel.variables:
            sharding = variable.value.sharding
            assert sharding.is_fully_replicated and len(sharding.device_set) == DEVICES, (variable.path, sharding)
        results[f"{name}/keras-parallel"] = heads.get_weights(parallel.layers[0])
        keras.distribution.set_distribution(None)
        results[f"{name}/keras-single"] = heads.get_weights(train(name).layers[0])
    save(out, results)
    print(f"trained {len(JAX_HEADS)} heads with DataParallel over {DEVICES} devices and without")


if __name__ == "__main__":
    main(sys.argv[1])
