"""``keras.distribution.DataParallel`` on the JAX backend over 4 virtual CPU devices training our Keras layer
with ``fit``'s own step (``train_on_batch``), and the same training without a distribution:
``KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/dp_keras.py OUT.npz``
(tests/test_distributed.py runs it in a subprocess; both variables must be set before Keras and JAX start).

``DataParallel`` replicates the variables and splits each batch over the devices; the replication is
checked on the trained variables. Keras's ``"mse"`` loss is the mean over every output value, as in the oracle.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import keras
import numpy as np
from dp_common import CASES, LR, STEPS, batches, initial_weights, save

import upsample
from upsample.backends import keras as uk

DEVICES = 4


def train(spec: Any, size: tuple[int, int], x: np.ndarray, target: np.ndarray) -> keras.Model:
    """A model of the spec's one layer (created under the current distribution), ``STEPS`` SGD steps."""
    layer = spec.build("keras", weights=initial_weights(spec))
    model = keras.Sequential([keras.Input((*size, spec.in_channels)), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    for step in range(STEPS):
        model.train_on_batch(x[step], target[step])
    return model


def main(out: str) -> None:
    assert keras.backend.backend() == "jax", "run with KERAS_BACKEND=jax: DataParallel needs the JAX backend here"
    devices = keras.distribution.list_devices()
    assert len(devices) == DEVICES, f"expected {DEVICES} devices, got {devices}"
    results = {}
    for name, (spec, size) in CASES.items():
        x, target = batches(spec, size)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        parallel = train(spec, size, x, target)
        for variable in parallel.trainable_variables:
            sharding = variable.value.sharding
            assert sharding.is_fully_replicated and len(sharding.device_set) == DEVICES, (variable.path, sharding)
        results[f"{name}/parallel"] = uk.get_weights(parallel.layers[0])
        keras.distribution.set_distribution(None)
        results[f"{name}/single"] = uk.get_weights(train(spec, size, x, target).layers[0])
    save(out, results)
    print(f"trained {len(CASES)} cases with DataParallel over {DEVICES} devices and without")


if __name__ == "__main__":
    warnings.simplefilter("ignore", upsample.UpsampleWarning)  # slice-pad-nearest has dead pixels on purpose
    main(sys.argv[1])
