"""Grouped and dilated Keras 3 layers, run in this process's ``KERAS_BACKEND`` (``conftest.PER_KERAS_BACKEND``).

Keras has no grouped transposed convolution and refuses a dilated one with a stride above 1, so these layers run
the phase split on every backend; the oracles are the NumPy reference, Keras's own grouped, dilated ``Conv2D``
and ``UpSampling2D(interpolation="bilinear")``, and its dilated ``Conv2DTranspose`` where the backend runs it
(TensorFlow's CPU kernel refuses a dilated transposed convolution: the layer here does not need it)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if os.environ.get("UPSAMPLE_KERAS_CHILD") != "1":
    pytest.skip("run once per Keras backend by tests/test_keras_backends.py", allow_module_level=True)

from test_keras import BACKEND, vjp  # noqa: E402  (sets up the backend, or skips)

# isort: split

import group_cases  # noqa: E402
import keras  # noqa: E402
import kind_cases  # noqa: E402

import upsample  # noqa: E402
from upsample import UpsampleSpec, init_weights, reference  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")
CASES = [group_cases.FIELD[0], *group_cases.SAMPLED[::3], group_cases.FIELD[2], *group_cases.CONV[:2]]
"""FCN's 64-channel depthwise stage (too big for the equivalence suite), some of the sweep, a 1-D grouped stage and
grouped, dilated sub-pixel layers (the square one cannot take ``depth_to_space``'s order into its weights)."""


def _canonical_kernel_grad(layer: Any, grads: dict[int, np.ndarray]) -> np.ndarray:
    kernel = grads[id(layer.conv.kernel)]
    return np.swapaxes(kernel, -1, -2) if layer.spec.KIND == "transposed" else kernel


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("spec", CASES, ids=group_cases.spec_id)
def test_forward_and_gradients_match_the_reference(spec: Any, data_format: str) -> None:
    size = group_cases.SIZES[spec.spatial_dims][1]
    weights = kind_cases.weights(spec, 1)
    x = np.random.default_rng(2).normal(size=(2, *size, spec.in_channels)).astype(np.float32)
    y_expected = reference.forward(spec, weights, x)
    grad_y = np.random.default_rng(3).normal(size=y_expected.shape).astype(np.float32)
    grad_x, grad_weights = reference.vjp(spec, weights, x, grad_y)
    layer = spec.build("keras", weights=weights, data_format=data_format)
    first = data_format == "channels_first"
    to_first = lambda a: np.ascontiguousarray(np.moveaxis(a, -1, 1)) if first else a  # noqa: E731
    ((y, got_x, grads),) = vjp([layer], to_first(x), to_first(grad_y))
    y, got_x = (np.moveaxis(np.asarray(a), 1, -1) if first else np.asarray(a) for a in (y, got_x))
    np.testing.assert_allclose(y, y_expected, rtol=RTOL, atol=ATOL, err_msg="output")
    np.testing.assert_allclose(got_x, grad_x, rtol=RTOL, atol=1e-4, err_msg="input gradient")
    kernel = _canonical_kernel_grad(layer, grads)
    np.testing.assert_allclose(kernel, grad_weights.kernel, rtol=RTOL, atol=1e-4, err_msg="kernel gradient")


def test_grouped_variables_are_named_and_shaped_as_keras_layers() -> None:
    spec = UpsampleSpec(4, 6, kernel_size=3, stride=2, padding=1, groups=2, dilation=2)
    weights = kind_cases.weights(spec, 0)
    layer = uk.Upsample(spec, weights=weights, name="up")
    expected = [("up/conv/kernel", (3, 3, 3, 4)), ("up/conv/bias", (6,))]
    assert [(v.path, tuple(v.shape)) for v in layer.weights] == expected
    assert uk.get_weights(layer).allclose(weights, rtol=0)


def test_grouped_layer_in_a_model_of_unknown_size() -> None:
    """A model declared with unknown spatial sizes runs (each call sees its input's sizes); a trace that leaves them
    unknown (a TensorFlow graph) gets an error that names the reason."""
    spec = UpsampleSpec(4, 4, kernel_size=4, stride=2, padding=1, groups=4)
    weights = kind_cases.weights(spec, 0)
    layer = uk.build(spec, weights=weights)
    model = keras.Sequential([keras.Input((None, None, 4)), layer])
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    got = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(got, reference.forward(spec, weights, x), rtol=RTOL, atol=ATOL)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        traced = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 4))])
        with pytest.raises(ValueError, match=r"grouped or dilated Upsample needs static spatial sizes \(groups=4"):
            traced.get_concrete_function()


def test_grouped_model_saves_and_loads_in_a_fresh_process(tmp_path: Path) -> None:
    spec = UpsampleSpec(4, 4, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2, dilation=2)
    model = keras.Sequential([keras.Input((3, 5, 4)), uk.Upsample(spec, weights=kind_cases.weights(spec, 2))])
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    paths = [str(tmp_path / name) for name in ("model.keras", "x.npy", "y.npy")]
    result = subprocess.run(
        [sys.executable, str(HERE / "keras_model_roundtrip.py"), *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    np.testing.assert_array_equal(np.load(paths[2]), expected)


@pytest.mark.parametrize("stride", [2, 4])
def test_bilinear_scheme_is_kerass_bilinear_upsampling(stride: int) -> None:
    """Equal to ``UpSampling2D(interpolation="bilinear")`` except the outer ``s / 2`` pixels per side (zeros read
    there, the edge repeated by Keras)."""
    spec = UpsampleSpec(3, 3, 2 * stride, stride, stride // 2, groups=3)
    x = np.random.default_rng(stride).normal(size=(2, 5, 4, 3)).astype(np.float32)
    y = keras.ops.convert_to_numpy(uk.build(spec, weights=init_weights(spec, scheme="bilinear"))(x))
    resized = keras.ops.convert_to_numpy(keras.layers.UpSampling2D(stride, interpolation="bilinear")(x))
    border = stride // 2
    inside = (slice(None), slice(border, 5 * stride - border), slice(border, 4 * stride - border))
    np.testing.assert_allclose(y[inside], resized[inside], rtol=RTOL, atol=ATOL)
    assert np.abs(y - resized).max() > 1e-3


def test_from_native_reads_a_grouped_dilated_conv() -> None:
    """``UpSampling2D`` then a grouped, dilated ``Conv2D``: converted, and our layer gives Keras's numbers."""
    conv = keras.layers.Conv2D(6, 3, padding="same", groups=2, dilation_rate=2)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = keras.ops.convert_to_numpy(conv(keras.layers.UpSampling2D(2)(x)))
    spec, weights = uk.from_native(conv, scale=2, method="nearest")
    assert (spec.in_channels, spec.groups, spec.dilation) == (4, 2, (2, 2))
    got = keras.ops.convert_to_numpy(uk.build(spec, weights=weights)(x))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_from_native_reads_a_dilated_conv_transpose(padding: str) -> None:
    """A stride-1 dilated ``Conv2DTranspose`` (Keras refuses dilation with a larger stride): converted; our layer
    gives the reference's numbers on every backend and Keras's own where the backend runs the native layer."""
    conv = keras.layers.Conv2DTranspose(3, 3, dilation_rate=2, padding=padding)
    conv.build((None, 4, 5, 2))
    spec, weights = uk.from_native(conv)
    assert spec.dilation == (2, 2)
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 2)).astype(np.float32)
    got = keras.ops.convert_to_numpy(uk.build(spec, weights=weights)(x))
    np.testing.assert_allclose(got, reference.forward(spec, weights, x), rtol=RTOL, atol=ATOL)
    if BACKEND != "tensorflow":  # TensorFlow's CPU kernel: "Conv2DCustomBackpropInputOp only supports dilation 1"
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(conv(x)), rtol=RTOL, atol=ATOL)


def test_grouped_conv_before_depth_to_space_is_refused_where_it_reads_dcr() -> None:
    conv = keras.layers.Conv2D(8, 3, padding="same", groups=2)
    conv.build((None, 4, 4, 4))
    if uk.conv.shuffle_order("channels_last", 2, 2) == "CRD":
        spec, _ = uk.from_native(conv, scale=2)
        assert spec.groups == 2
        return
    with pytest.raises(ValueError, match="conv.groups must be 1 before depth_to_space, which reads DCR"):
        uk.from_native(conv, scale=2)


def test_grouped_specs_read_back_through_upsample_namespace() -> None:
    spec = upsample.SubpixelSpec(4, 4, scale=2, kernel_size=3, groups=4)
    weights = kind_cases.weights(spec, 4)
    assert uk.get_weights(spec.build("keras", weights=weights)).allclose(weights, rtol=0)
