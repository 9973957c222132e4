"""Heads read from native Keras code of every kind Keras has a layer for (``Conv2DTranspose``; ``UpSampling2D``
+ ``Conv2D``; flat or in a nested ``keras.Sequential``), in this process's ``KERAS_BACKEND``: the converted head
against the native model's own outputs in training and inference mode, the package's one ``from_native``, and
the refusals.

Run once per Keras backend (``conftest.PER_KERAS_BACKEND``): by hand
``UPSAMPLE_KERAS_CHILD=1 KERAS_BACKEND=jax pytest tests/test_head_from_native_keras.py``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

if os.environ.get("UPSAMPLE_KERAS_CHILD") != "1":
    pytest.skip("run once per Keras backend by tests/test_keras_backends.py", allow_module_level=True)

import test_keras  # noqa: E402, F401  (sets up the backend, or skips)

# isort: split

import keras  # noqa: E402
from cases import ATOL, RTOL  # noqa: E402

import upsample  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402
from upsample.backends.keras import head as keras_stack  # noqa: E402
from upsample.head import HeadSpec  # noqa: E402
from upsample.head_weights import HeadWeights  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning"),
]


def native_model(nested: bool) -> Any:
    """A head of every kind as people write it in Keras (channels-last), with non-trivial statistics."""
    keras.utils.set_random_seed(3)
    resize = [keras.layers.UpSampling2D(2, interpolation="bilinear"), keras.layers.Conv2D(6, 3, padding="same")]
    nearest = [keras.layers.UpSampling2D(2), keras.layers.Conv2D(3, 3, padding="same")]
    model = keras.Sequential(
        [
            keras.Input((3, 3, 8)),
            keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same"),
            keras.layers.BatchNormalization(momentum=0.8),
            keras.layers.LeakyReLU(0.2),
            *([keras.Sequential(resize)] if nested else resize),
            keras.layers.BatchNormalization(momentum=0.8),
            keras.layers.LeakyReLU(0.2),
            *([keras.Sequential(nearest)] if nested else nearest),
            keras.layers.Activation("tanh"),
        ]
    )
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, 6).astype(np.float32))
            layer.beta.assign(rng.uniform(-0.5, 0.5, 6).astype(np.float32))
            layer.moving_mean.assign(rng.uniform(-0.5, 0.5, 6).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, 6).astype(np.float32))
    return model


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_keras_head_of_every_kind_reproduced(nested: bool, training: bool) -> None:
    model = native_model(nested)
    spec, weights = keras_stack.from_native(model)
    assert [type(stage).__name__ for stage in spec.stages] == ["UpsampleSpec", "ResizeSpec", "ResizeSpec"]
    assert [stage.method for stage in spec.stages[1:]] == ["linear", "nearest"]
    x = np.random.default_rng(7).normal(size=(4, 3, 3, 8)).astype(np.float32)
    want = keras.ops.convert_to_numpy(model(x, training=training))
    head = spec.build("keras", weights=weights, data_format="channels_last")
    got = keras.ops.convert_to_numpy(head(x, training=training))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_keras_package_from_native_reads_a_layer_a_kind_pattern_or_a_head() -> None:
    model = native_model(True)
    spec, weights = uk.from_native(model)
    assert isinstance(spec, HeadSpec) and isinstance(weights, HeadWeights)
    assert uk.from_native(list(model.layers))[0] == spec
    assert isinstance(uk.from_native(model.layers[0])[0], upsample.UpsampleSpec)
    conv = model.layers[3].layers[1]
    assert isinstance(uk.from_native(conv, scale=2, method="bilinear")[0], upsample.ResizeSpec)


def test_keras_refusals_name_the_position_and_type() -> None:
    model = native_model(True)
    transposed, nested = model.layers[0], model.layers[3]
    tail = (
        r"expected Conv2DTranspose, Conv2D \+ a layer calling keras.ops.depth_to_space \(with a block_size attribute\) "
        r"or UpSampling2D \+ Conv2D stages \(each also as a nested keras.Sequential\), each followed by at most one "
    )
    with pytest.raises(ValueError, match=r"layers\[1\] \(Dropout\) has no place in a head: " + tail):
        keras_stack.from_native([transposed, keras.layers.Dropout(0.5)])
    with pytest.raises(ValueError, match=r"layers\[1\] \(Conv2D\) must be followed by a layer calling keras.ops.depth"):
        keras_stack.from_native([transposed, nested.layers[1]])
    with pytest.raises(ValueError, match=r"layers\[1\]\[0\] \(UpSampling2D\) must be followed by Conv2D"):
        keras_stack.from_native([transposed, keras.Sequential([nested.layers[0], keras.layers.ReLU()])])
    with pytest.raises(ValueError, match=r"layers\[1\] \(ReLU with max_value"):
        keras_stack.from_native([transposed, keras.layers.ReLU(max_value=6.0)])
