"""Keras's upsampling code read whole (issue 27), in this process's ``KERAS_BACKEND``: a functional model whose
layers form one chain, a sub-pixel stage as a ``Conv2D`` then a layer of the user's calling
``keras.ops.depth_to_space``, a blurred layer of upsample's own read back, and ``upsample.find`` on a model with an
encoder, judged at the model's own sizes.

Run once per Keras backend (``conftest.PER_KERAS_BACKEND``): by hand
``UPSAMPLE_KERAS_CHILD=1 KERAS_BACKEND=jax pytest tests/test_blocks_keras.py``.
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

import upsample  # noqa: E402
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")


class DepthToSpace(keras.layers.Layer):
    """A pixel shuffle as Keras users write one (Keras has no layer for it)."""

    def __init__(self, block_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x: Any) -> Any:
        return keras.ops.depth_to_space(x, self.block_size)


def functional_decoder() -> keras.Model:
    x = keras.Input((4, 5, 3))
    h = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same", name="up")(x)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(4 * 4, 3, padding="same", name="conv")(h)
    return keras.Model(x, DepthToSpace(2, name="shuffle")(h))


def test_a_chained_functional_model_with_a_users_depth_to_space_is_a_head() -> None:
    model = functional_decoder()
    spec, weights = uk.from_native(model)
    assert [type(stage) for stage in spec.stages] == [UpsampleSpec, SubpixelSpec] and spec.activation.kind == "relu"
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(uk.build(spec, weights=weights)(x))
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(model(x)), rtol=1e-4, atol=1e-5)


def test_a_branching_functional_model_is_refused_by_name() -> None:
    x = keras.Input((4, 4, 3))
    up = keras.layers.Conv2DTranspose(3, 2, strides=2, name="up")(x)
    side = keras.layers.UpSampling2D(2, name="side")(x)
    model = keras.Model(x, keras.layers.Add(name="add")([up, side]))
    with pytest.raises(ValueError, match=r"layers form one chain; 'side' does not take the output of 'up'"):
        uk.from_native(model)


def test_one_stage_reads_as_that_stage_and_own_layers_read_back() -> None:
    seq = keras.Sequential(
        [keras.Input((6, 6, 3)), keras.layers.UpSampling2D(2), keras.layers.Conv2D(5, 3, padding="same")]
    )
    spec, _ = uk.from_native(seq)
    assert spec == ResizeSpec(3, 5, 2, "nearest", 3)
    layer = uk.build(SubpixelSpec(3, 2, blur="monai"))
    layer(np.zeros((1, 4, 4, 3), "float32"))
    assert uk.from_native(layer)[0] == layer.spec


def test_find_lists_the_upsamplers_at_the_models_sizes() -> None:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down"),
            keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="up"),
            keras.layers.UpSampling2D(2, name="resize"),
        ]
    )
    found = upsample.find(model)
    assert [(f.path, f.input_size) for f in found] == [("up", (4, 4)), ("resize", (8, 8))]
    assert "checkerboard" in found[0].verdict and found[1].spec == ResizeSpec(3, scale=2, kernel_size=None)
    whole = upsample.find(functional_decoder())
    assert [(f.path, f.block, f.input_size) for f in whole] == [("", "Functional", (4, 5))]
    assert "(the model) (Functional)" in str(whole)
