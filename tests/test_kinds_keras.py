"""Keras 3 sub-pixel and resize layers, run in this process's ``KERAS_BACKEND``.

Run once per Keras backend (``conftest.PER_KERAS_BACKEND``, ``UPSAMPLE_KERAS_CHILD=1``), so passing on
all three shows that ``channels_first`` gives the same numbers on TensorFlow, JAX and torch, although
``keras.ops.depth_to_space`` reads a different channel order there. Oracles: the NumPy reference,
Keras's own ``Conv2D`` + ``depth_to_space`` / ``UpSampling2D``, and torch (porting). Keras's own
``Conv2D`` always runs channels-last here (TensorFlow's CPU kernel refuses NCHW without oneDNN).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

if os.environ.get("UPSAMPLE_KERAS_CHILD") != "1":
    pytest.skip("run once per Keras backend by tests/test_keras_backends.py", allow_module_level=True)

from test_keras import BACKEND, to_nchw, to_nhwc, vjp  # noqa: E402  (sets up the backend, or skips)

# isort: split

import keras  # noqa: E402
from cases import require_backend  # noqa: E402
from kind_cases import CASES, SWEEP, Spec, case_id, expected, inputs, weights  # noqa: E402

import upsample  # noqa: E402
from upsample import conv_geometry, resize_ops, resize_table  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402
from upsample.conv_specs import ResizeSpec, SubpixelSpec  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
FORMATS = ["channels_last", "channels_first"]


def canonical_grads(layer: uk.Subpixel | uk.ResizeConv, grads: dict[int, np.ndarray]) -> upsample.Weights:
    """Gradients of the layer's variables in the canonical layout (the native shuffle order undone)."""
    if layer.conv is None:  # a resize alone
        return upsample.Weights(None)
    kernel = grads[id(layer.conv.kernel)]
    bias = None if layer.conv.bias is None else grads[id(layer.conv.bias)]
    if layer.permutation is not None:
        inverse = list(conv_geometry.inverse_permutation(layer.permutation))
        kernel, bias = kernel[..., inverse], None if bias is None else bias[inverse]
    return upsample.Weights(kernel, bias, None if layer.skip is None else grads[id(layer.skip.kernel)][0, 0])


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize(("spec", "size"), CASES, ids=case_id)
def test_forward_and_gradients_match_reference(spec: Spec, size: tuple[int, int], data_format: str) -> None:
    w = weights(spec)
    x, grad_y = inputs(spec, size)
    want = expected(spec, w, x, grad_y)
    paths = [True, False] if size == (1, 1) and isinstance(spec, SubpixelSpec) else [True]
    layers = [spec.build("keras", weights=w, data_format=data_format, fast_path=fast) for fast in paths]
    first = data_format == "channels_first"
    for layer, (y, grad_x, grads) in zip(
        layers, vjp(layers, to_nchw(x) if first else x, to_nchw(grad_y) if first else grad_y), strict=True
    ):
        np.testing.assert_allclose(to_nhwc(y) if first else y, want["y"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(to_nhwc(grad_x) if first else grad_x, want["grad_x"], rtol=RTOL, atol=ATOL)
        for name, got in zip(("kernel", "bias", "skip"), canonical_grads(layer, grads).arrays(), strict=True):
            ref = want[f"grad_{name}"]
            assert (got is None) == (ref is None), name
            if ref is not None:
                np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=name)


UPSAMPLING = {
    ResizeSpec(1, method="nearest").interpolation: "nearest",
    ResizeSpec(1, method="linear").interpolation: "bilinear",
}
"""``UpSampling2D``'s ``interpolation`` for the spec settings it computes (repeating pixels; half-pixel bilinear)."""


def _native_pattern(spec: Spec) -> bool:
    if isinstance(spec, ResizeSpec):
        return spec.integer_scale is not None and spec.interpolation in UPSAMPLING  # UpSampling2D takes ints
    return spec.scale[0] == spec.scale[1]


NATIVE = [s for s in SWEEP if s.residual is None and _native_pattern(s)]
"""Patterns a Keras user can write natively (``depth_to_space`` takes one block size)."""


@pytest.mark.parametrize("data_format", FORMATS)
def test_shuffle_order_is_measured_as_documented(data_format: str) -> None:
    """DCR for channels_last everywhere; for channels_first DCR on TensorFlow, CRD on JAX and torch."""
    want = "DCR" if data_format == "channels_last" or BACKEND == "tensorflow" else "CRD"
    assert uk.conv.shuffle_order(data_format, 2, 3) == want


def native_conv(conv: keras.layers.Conv2D, x: Any) -> Any:
    """``conv(x)``, computed by a channels-last twin holding the same weights when ``conv`` is channels-first:
    TensorFlow's CPU kernel without oneDNN refuses an NCHW ``Conv2D`` ("The Conv2D op currently only supports
    the NHWC tensor format on the CPU"), so the baseline must not depend on what this machine's kernels take."""
    if conv.data_format == "channels_last":
        return conv(x)
    conv.build(tuple(x.shape))
    twin = keras.layers.Conv2D.from_config({**conv.get_config(), "data_format": "channels_last"})
    twin.build((None, *x.shape[2:], x.shape[1]))
    twin.set_weights(conv.get_weights())
    return keras.ops.transpose(twin(keras.ops.transpose(x, (0, 2, 3, 1))), (0, 3, 1, 2))


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("spec", NATIVE, ids=case_id)
def test_a_keras_users_native_pattern(spec: Spec, data_format: str) -> None:
    """A user's ``Conv2D(padding="same")`` + ``depth_to_space`` (square scales) or ``UpSampling2D`` + ``Conv2D``,
    converted by ``from_native`` (for the shuffle: this backend's order undone), gives their numbers."""
    keras.utils.set_random_seed(0)
    kernel_channels = (spec.weight_shapes()["kernel"] or (1, 1, 1, 1))[3]  # (a resize alone has no convolution)
    conv = keras.layers.Conv2D(kernel_channels, spec.kernel_size or 1, padding="same", data_format=data_format)
    x, _ = inputs(spec, (3, 4))
    x = to_nchw(x) if data_format == "channels_first" else x
    if isinstance(spec, SubpixelSpec):
        z = native_conv(conv, x)
        native = z if spec.scale == (1, 1) else keras.ops.depth_to_space(z, spec.scale[0], data_format=data_format)
        got_spec, got_weights = uk.from_native(conv, scale=spec.scale[0])
    else:
        interpolation = UPSAMPLING[spec.interpolation]
        resize = keras.layers.UpSampling2D(spec.scale, data_format=data_format, interpolation=interpolation)
        if spec.kernel_size is None:  # a resize alone: the bare layer
            native = resize(x)
            got_spec, got_weights = uk.from_native(resize, in_channels=spec.in_channels)
        else:
            native = native_conv(conv, resize(x))
            got_spec, got_weights = uk.from_native(conv, scale=spec.scale, method=interpolation)
    assert got_spec == spec
    layer = spec.build("keras", weights=got_weights, data_format=data_format)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(native), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("data_format", FORMATS)
def test_icnr_is_nearest_upsampling_of_a_conv(data_format: str) -> None:
    spec = SubpixelSpec(3, 2, scale=2, kernel_size=3)
    w = upsample.init_weights(spec, seed=1, scheme="icnr")
    x, _ = inputs(spec, (3, 4))
    small = keras.ops.conv(x, w.kernel[..., ::4], 1, "same", "channels_last")  # Keras's own convolution
    nearest = np.repeat(np.repeat(keras.ops.convert_to_numpy(small), 2, axis=1), 2, axis=2)
    layer = spec.build("keras", weights=w, data_format=data_format)
    y = keras.ops.convert_to_numpy(layer(to_nchw(x) if data_format == "channels_first" else x))
    np.testing.assert_allclose(to_nhwc(y) if data_format == "channels_first" else y, nearest, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_weights() -> None:
    for spec in (SWEEP[1], SWEEP[6]):
        layer = spec.build("keras", weights=weights(spec), data_format="channels_first")
        clone = type(layer).from_config(layer.get_config())
        assert clone.spec == spec and clone.data_format == "channels_first"
        uk.set_weights(clone, uk.get_weights(layer))
        assert uk.get_weights(clone).allclose(weights(spec), rtol=0)
    with pytest.raises(TypeError, match="spec must be an upsample SubpixelSpec, got ResizeSpec"):
        uk.Subpixel(ResizeSpec(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_format=.channels_first.: it reads NCHW"):
        SubpixelSpec(3).build("keras", data_format="channels_first")(np.zeros((1, 2, 2, 3), "float32"))


@pytest.mark.parametrize("spec", [SubpixelSpec(2, 2, scale=2, kernel_size=3), SWEEP[6]], ids=case_id)
def test_weights_trained_in_keras_give_keras_outputs_in_torch(spec: Spec) -> None:
    require_backend("torch")
    import torch

    keras.utils.set_random_seed(0)
    layer = spec.build("keras", weights=weights(spec), data_format="channels_first")
    model = keras.Sequential([keras.Input((spec.in_channels, 3, 4)), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, _ = inputs(spec, (3, 4))
    x = to_nchw(x)
    model.fit(x, np.ones((2, spec.out_channels, *spec.output_size((3, 4))), "float32"), epochs=3, verbose=0)
    want = keras.ops.convert_to_numpy(layer(x))
    torch_layer = spec.build("torch", weights=uk.get_weights(layer))
    np.testing.assert_allclose(torch_layer(torch.from_numpy(x)).detach().numpy(), want, rtol=RTOL, atol=ATOL)


def test_from_native_refuses_what_has_no_spec() -> None:
    strided = keras.layers.Conv2D(8, 3, strides=2, padding="same")
    strided.build((None, 4, 4, 2))
    with pytest.raises(ValueError, match="conv.strides must be"):
        uk.from_native(strided, scale=2)
    valid = keras.layers.Conv2D(8, 3)
    valid.build((None, 4, 4, 2))
    with pytest.raises(ValueError, match="conv.padding must be 'same' to convert to a spec, got 'valid'"):
        uk.from_native(valid, scale=2)
    with pytest.raises(ValueError, match="is not built"):
        uk.from_native(keras.layers.Conv2D(8, 3, padding="same"), scale=2)


@pytest.mark.parametrize("spec", [SubpixelSpec(4, 2, scale=2), ResizeSpec(3, 8, scale=2, residual="projection")])
def test_channels_first_where_the_width_equals_the_channels(spec: Spec) -> None:
    """Keras 3.15.1 on TensorFlow adds a ``(1, C, 1, 1)`` bias along the width of an NCHW tensor whose width
    is ``C`` (``Conv2D(data_format="channels_first")`` included); ours runs channels-last inside and
    matches the reference there on every backend."""
    w = weights(spec)
    size = (3, spec.weight_shapes()["kernel"][3])  # type: ignore[index]  # the width of the conv's output is C
    if isinstance(spec, ResizeSpec):
        size = (3, spec.out_channels // spec.scale[1])
    x, _ = inputs(spec, size)
    layer = spec.build("keras", weights=w, data_format="channels_first")
    got = to_nhwc(keras.ops.convert_to_numpy(layer(to_nchw(x))))
    np.testing.assert_allclose(got, upsample.reference.forward(spec, w, x), rtol=RTOL, atol=ATOL)


def _times(size: tuple[int, ...], scale: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n * r for n, r in zip(size, scale, strict=True))


IMAGE_RESIZE_ROWS = [row for row in resize_table.KERAS_IMAGE_RESIZE if not row.backends or BACKEND in row.backends]


@pytest.mark.parametrize("row", IMAGE_RESIZE_ROWS, ids=lambda row: row.call)
def test_keras_image_resize_rows_resize_to_any_size(row: resize_table.NativeResize) -> None:
    """Each row of ``resize_table.KERAS_IMAGE_RESIZE`` on this backend: ``keras.ops.image.resize`` and
    ``keras.layers.Resizing`` to a size (larger, smaller, or both) equal the row's settings resized to that size in
    NumPy; the bare ``Resizing`` and ``Resizing`` + ``Conv2D``, read by ``from_native``, give their own numbers."""
    rng = np.random.default_rng(5)
    interpolation = str(dict(row.options)["interpolation"])
    take = lambda v, indices, axis: np.take(v, indices, axis=axis)  # noqa: E731
    for size, out in [((3, 4), (5, 7)), ((1, 3), (4, 5)), ((5, 6), (3, 9))]:
        x = rng.normal(size=(2, *size, 3)).astype(np.float32)
        want = resize_ops.resize(x.astype(np.float64), row.interpolation, (1, 2), size, out, (None, None), take, _same)
        resizing = keras.layers.Resizing(*out, interpolation=interpolation)
        for got in (keras.ops.image.resize(x, out, interpolation=interpolation), resizing(x)):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=RTOL, atol=ATOL, err_msg=f"{out}")
        alone, none = uk.from_native(resizing, in_channels=3)  # the bare layer: a resize alone
        assert alone.resize_only and alone.size == out and none.arrays() == (None, None, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)  # the shrinking size
            got = keras.ops.convert_to_numpy(alone.build("keras", weights=none)(x))
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(resizing(x)), rtol=RTOL, atol=ATOL)
        conv = keras.layers.Conv2D(2, 3, padding="same")
        native = keras.ops.convert_to_numpy(conv(resizing(x)))
        spec, w = uk.from_native(conv, size=out, method=interpolation)
        assert spec.size == out and spec.scale is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)  # the shrinking size
            got = keras.ops.convert_to_numpy(spec.build("keras", weights=w)(x))
        np.testing.assert_allclose(got, native, rtol=RTOL, atol=ATOL)


def _same(weights: np.ndarray, _: object) -> np.ndarray:
    return weights


KERAS_ROWS = [row for row in resize_table.KERAS_UPSAMPLING if not row.backends or BACKEND in row.backends]


@pytest.mark.parametrize("row", KERAS_ROWS, ids=lambda row: row.call)
def test_keras_rows_are_keras_upsampling(row: resize_table.NativeResize) -> None:
    """Each row of ``resize_table.KERAS_UPSAMPLING`` that holds on this backend: the Keras layer equals the row's
    settings resized in NumPy; and ``UpSampling`` + ``Conv``, read by ``from_native``, gives its own numbers."""
    (rank,) = row.ranks
    rng = np.random.default_rng(2)
    interpolation = dict(row.options).get("interpolation", "nearest")
    for size, scale in [((1, 3, 2)[:rank], (2, 3, 2)[:rank]), ((4, 2, 3)[:rank], (3, 2, 1)[:rank])]:
        x = rng.normal(size=(2, *size, 3)).astype(np.float32)
        if rank == 2:
            layer = keras.layers.UpSampling2D(scale, interpolation=interpolation)
        else:
            layer = keras.layers.UpSampling1D(scale[0]) if rank == 1 else keras.layers.UpSampling3D(scale)
        take = lambda v, indices, axis: np.take(v, indices, axis=axis)  # noqa: E731
        axes = tuple(range(1, 1 + rank))
        want = resize_ops.resize(
            x.astype(np.float64), row.interpolation, axes, size, _times(size, scale), scale, take, lambda w, _: w
        )
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), want, rtol=RTOL, atol=ATOL)
        conv = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)[rank - 1](2, 3, padding="same")
        native = keras.ops.convert_to_numpy(conv(layer(x)))
        spec, w = uk.from_native(conv, scale=scale, method=interpolation)
        got = keras.ops.convert_to_numpy(spec.build("keras", weights=w)(x))
        np.testing.assert_allclose(got, native, rtol=RTOL, atol=ATOL)


def test_tensorflows_bicubic_upsampling_has_no_spec() -> None:
    """On TensorFlow ``UpSampling2D(interpolation="bicubic")`` weighs from a 1024-step table: refused by name."""
    conv = keras.layers.Conv2D(2, 3, padding="same")
    conv.build((None, 4, 4, 3))
    if BACKEND == "tensorflow":
        with pytest.raises(ValueError, match=r"bicubic.*tensorflow backend has no spec"):
            uk.from_native(conv, scale=2, method="bicubic")
    else:
        spec, _ = uk.from_native(conv, scale=2, method="bicubic")
        assert spec.method == "cubic" and spec.cubic_a == (-0.75 if BACKEND == "torch" else -0.5)


if BACKEND == "tensorflow":  # TensorFlow's own functions, where TensorFlow is the backend

    @pytest.mark.parametrize("row", resize_table.TENSORFLOW, ids=lambda row: row.call)
    def test_tensorflow_rows_are_tensorflows_resize(row: resize_table.NativeResize) -> None:
        """Each row of ``resize_table.TENSORFLOW`` (collected on the TensorFlow backend): the TensorFlow function equals
        the row's settings resized in NumPy and the Keras layer built from the spec of those settings (a 1x1 identity
        convolution after the resize, so the layer's output is the resize itself)."""
        import tensorflow as tf

        options = dict(row.options)
        function = {
            "tf.image.resize": tf.image.resize,
            "tf.compat.v1.image.resize_nearest_neighbor": tf.compat.v1.image.resize_nearest_neighbor,
            "tf.compat.v1.image.resize_bilinear": tf.compat.v1.image.resize_bilinear,
        }[str(options.pop("function"))]
        settings = resize_table.spec_settings(row.interpolation)
        rng = np.random.default_rng(3)
        for size, scale in [((1, 3), (2, 3)), ((4, 2), (3, 2)), ((3, 5), (2, 2))]:
            x = rng.normal(size=(2, *size, 3)).astype(np.float32)
            got = np.asarray(function(x, tuple(n * r for n, r in zip(size, scale, strict=True)), **options))
            take = lambda v, indices, axis: np.take(v, indices, axis=axis)  # noqa: E731
            want = resize_ops.resize(
                x.astype(np.float64), row.interpolation, (1, 2), size, _times(size, scale), scale, take, lambda w, _: w
            )
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=row.call)
            spec = ResizeSpec(3, 3, scale, kernel_size=1, use_bias=False, **settings)
            identity = upsample.Weights(np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3))
            layer = spec.build("keras", weights=identity)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(layer(x)), got, rtol=RTOL, atol=ATOL, err_msg=row.call
            )
        for size, out in [((3, 4), (5, 7)), ((1, 3), (4, 5))]:  # to a size no multiple of the input (ONNX sizes)
            x = rng.normal(size=(2, *size, 3)).astype(np.float32)
            got = np.asarray(function(x, out, **options))
            take = lambda v, indices, axis: np.take(v, indices, axis=axis)  # noqa: E731
            want = resize_ops.resize(
                x.astype(np.float64), row.interpolation, (1, 2), size, out, (None, None), take, lambda w, _: w
            )
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{row.call} {size} -> {out}")
