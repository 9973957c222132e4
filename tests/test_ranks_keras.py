"""Keras 3 layers and heads at 1 and 3 spatial axes, in this process's ``KERAS_BACKEND``.

Run once per Keras backend (``conftest.PER_KERAS_BACKEND``, ``UPSAMPLE_KERAS_CHILD=1``). Oracles: the NumPy
reference (forward, input and weight gradients; heads: ``upsample.head_reference`` in training mode with running
statistics) and Keras's own ``Conv1DTranspose``/``Conv3DTranspose``, ``Conv1D``/``Conv3D`` and
``UpSampling1D``/``UpSampling3D`` fed converted weights (channels-last: TensorFlow's CPU kernels refuse
channels-first without oneDNN). Cases are sampled, not swept: every kind and residual mode at each rank,
1-pixel (the matmul path) and larger inputs, both data formats.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("UPSAMPLE_KERAS_CHILD") != "1":
    pytest.skip("run once per Keras backend by tests/test_keras_backends.py", allow_module_level=True)

from test_keras import vjp  # noqa: E402  (sets up the backend, or skips)

# isort: split

import keras  # noqa: E402
import rank_cases  # noqa: E402
from head_cases import assert_weights_close, batches, head_weights  # noqa: E402
from kind_cases import Spec, expected, inputs, weights  # noqa: E402

import upsample  # noqa: E402
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec, head_reference  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402
from upsample.backends.keras import head as keras_head  # noqa: E402
from upsample.head import Norm  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning"),
]

SPECS, SIZES = rank_cases.SPECS, rank_cases.SIZES
CASES = [
    (spec, size, ("channels_last", "channels_first")[(i + j) % 2])  # each spec and size in one format, alternating
    for i, spec in enumerate(SPECS)
    for j, size in enumerate(SIZES[spec.spatial_dims])
]


def case_id(case: tuple[Spec, tuple[int, ...], str]) -> str:
    spec, size, data_format = case
    return f"{spec.KIND}-{spec.spatial_dims}d-{'x'.join(map(str, size))}-{data_format}-{spec.residual}"


def first(array: np.ndarray) -> np.ndarray:
    """Channels-last ``(N, *spatial, C)`` -> channels-first ``(N, C, *spatial)``."""
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def last(array: np.ndarray) -> np.ndarray:
    """Channels-first -> channels-last."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(array), 1, -1))


def canonical_grads(layer: keras.layers.Layer, grads: dict[int, np.ndarray]) -> upsample.Weights:
    """Gradients of the layer's variables in the canonical layout, converted here by hand: a transposed kernel
    is stored ``(*k, C_out, C_in)``, a convolution's ``(*k, C_in, C_conv)`` (no shuffle reordering outside 2-D),
    the projection ``(1, .., 1, C_in, C_out)``."""
    kernel = grads[id(layer.conv.kernel)]
    if isinstance(layer, uk.Upsample):
        kernel = np.swapaxes(kernel, -1, -2)
    bias = None if layer.conv.bias is None else grads[id(layer.conv.bias)]
    skip = None if layer.skip is None else grads[id(layer.skip.kernel)].reshape(layer.skip.kernel.shape[-2:])
    return upsample.Weights(kernel, bias, skip)


@pytest.mark.parametrize(("spec", "size", "data_format"), CASES, ids=[case_id(c) for c in CASES])
def test_forward_and_gradients_match_reference(spec: Spec, size: tuple[int, ...], data_format: str) -> None:
    w = weights(spec)
    x, grad_y = inputs(spec, size)  # type: ignore[arg-type]
    want = expected(spec, w, x, grad_y)
    paths = [True, False] if all(n == 1 for n in size) else [True]
    layers = [spec.build("keras", weights=w, data_format=data_format, fast_path=fast) for fast in paths]
    channels_first = data_format == "channels_first"
    results = vjp(layers, first(x) if channels_first else x, first(grad_y) if channels_first else grad_y)
    for layer, (y, grad_x, grads) in zip(layers, results, strict=True):
        assert layer.compute_output_shape((x if not channels_first else first(x)).shape) == y.shape
        np.testing.assert_allclose(last(y) if channels_first else y, want["y"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(last(grad_x) if channels_first else grad_x, want["grad_x"], rtol=RTOL, atol=ATOL)
        for name, got in zip(("kernel", "bias", "skip"), canonical_grads(layer, grads).arrays(), strict=True):
            ref = want[f"grad_{name}"]
            assert (got is None) == (ref is None), name
            if ref is not None:
                np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=name)


def _native(spec: Spec, padding: str) -> tuple[keras.layers.Layer, list[keras.layers.Layer]]:
    """Keras's own layers a user writes for ``spec`` (no residual): the convolution and the whole pipeline."""
    rank = spec.spatial_dims
    if isinstance(spec, UpsampleSpec):
        transposed = getattr(keras.layers, f"Conv{rank}DTranspose")
        conv = transposed(spec.out_channels, spec.kernel_size, strides=spec.stride, padding=padding)
        return conv, [conv]
    conv = getattr(keras.layers, f"Conv{rank}D")(spec.conv_channels, spec.kernel_size, padding="same")
    if rank == 1:
        resize = keras.layers.UpSampling1D(spec.scale[0])
    else:
        resize = keras.layers.UpSampling3D(spec.scale)
    return conv, [resize, conv]


NATIVE_CASES = [
    (UpsampleSpec(4, 3, kernel_size=(4,), stride=2, padding="same"), "same"),
    (UpsampleSpec(3, 2, kernel_size=(5,), stride=3, padding="valid"), "valid"),
    (UpsampleSpec(3, 2, kernel_size=(4, 2, 3), stride=(2, 2, 1), padding="same"), "same"),
    (UpsampleSpec(2, 3, kernel_size=2, stride=2, padding="valid", spatial_dims=3), "valid"),
    (ResizeSpec(3, 2, scale=(3,), method="nearest", kernel_size=3), ""),
    (ResizeSpec(2, 3, scale=(2, 1, 2), method="nearest", kernel_size=(3, 2, 1)), ""),
]


@pytest.mark.parametrize(
    ("spec", "padding"), NATIVE_CASES, ids=[f"{s.KIND}-{s.spatial_dims}d-{i}" for i, (s, _) in enumerate(NATIVE_CASES)]
)
def test_matches_keras_native_layers_and_from_native(spec: Spec, padding: str) -> None:
    """Keras's own layers with their own (random) weights: ``from_native`` reads them, and ours with those weights
    gives the same output and input gradient (channels-last) as Keras's, and the reference's output."""
    keras.utils.set_random_seed(3)
    conv, pipeline = _native(spec, padding)
    size = (3,) if spec.spatial_dims == 1 else (2, 1, 3)
    x, _ = inputs(spec, size)  # type: ignore[arg-type]
    model = keras.Sequential([keras.Input(x.shape[1:]), *pipeline])
    if isinstance(spec, ResizeSpec):
        scale = spec.scale if spec.spatial_dims == 3 else spec.scale[0]
        got_spec, got_weights = uk.from_native(conv, scale=scale, method="nearest")
    else:
        got_spec, got_weights = uk.from_native(conv)
    assert got_spec == spec
    ours = got_spec.build("keras", weights=got_weights, data_format="channels_last")
    grad_y = np.random.default_rng(4).normal(size=(x.shape[0], *spec.output_size(size), spec.out_channels))
    (want_y, want_gx, _), (y, gx, _) = vjp([model, ours], x, grad_y.astype(np.float32))
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gx, want_gx, rtol=RTOL, atol=ATOL)
    # and both agree with the reference on the converted weights
    np.testing.assert_allclose(y, upsample.reference.forward(spec, got_weights, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.KIND}-{s.spatial_dims}d-{i}" for i, s in enumerate(SPECS)])
def test_get_set_weights_round_trip(spec: Spec) -> None:
    w = weights(spec, seed=5)
    layer = uk.build(spec, weights=w, data_format="channels_first")  # set_weights
    got = uk.get_weights(layer)
    for name, a, b in zip(("kernel", "bias", "skip"), w.arrays(), got.arrays(), strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(b, a, err_msg=name)


def test_subpixel_1d_and_3d_from_native_read_the_crd_shuffle() -> None:
    """A ``Conv1D``/``Conv3D`` followed by the canonical CRD shuffle (MONAI's ``pixelshuffle``; Keras has none):
    ``from_native(conv, scale=...)`` reads the weights without reordering."""
    for rank, scale in ((1, 3), (3, (2, 1, 2))):
        conv = getattr(keras.layers, f"Conv{rank}D")(2 * (3 if rank == 1 else 4), 3, padding="same")
        conv.build((None,) * (rank + 1) + (3,))
        spec, w = uk.from_native(conv, scale=scale)
        assert isinstance(spec, SubpixelSpec) and spec.out_channels == 2 and spec.spatial_dims == rank
        np.testing.assert_array_equal(w.kernel, keras.ops.convert_to_numpy(conv.kernel))


def test_wrong_rank_input_names_the_layout() -> None:
    layer = uk.build(next(s for s in SPECS if s.spatial_dims == 3), data_format="channels_first")
    with pytest.raises(ValueError, match=r"rank-5 NCDHW.*channels_first"):
        layer(np.zeros((2, 3, 4, 4), np.float32))
    layer = uk.build(next(s for s in SPECS if s.spatial_dims == 1), data_format="channels_last")
    with pytest.raises(ValueError, match=r"rank-3 NLC"):
        layer(np.zeros((2, 4, 4, 4), np.float32))


def test_gather_resize_of_unknown_size_is_refused_by_name() -> None:
    """A resize Keras has no layer for gathers by the taps of a known length (a graph traced with unknown spatial
    sizes reaches this)."""
    spec = upsample.ResizeSpec(3, scale=3, method="linear", spatial_dims=1)
    with pytest.raises(ValueError, match=r"linear resize with coordinates='half_pixel' needs static spatial sizes"):
        uk.conv.gather_resize(np.zeros((1, 4, 3), np.float32), spec, (None,))


@pytest.mark.filterwarnings("default::upsample.UpsampleWarning")
def test_dead_pixel_warning_once_per_input_size() -> None:
    """A stride above the kernel leaves pixels no input reaches: the warning names the size, once per size."""
    import warnings

    for spec, sizes in (
        (UpsampleSpec(2, 2, kernel_size=(2,), stride=3), [(4,), (4,), (5,)]),
        (UpsampleSpec(2, 2, kernel_size=2, stride=(1, 3, 1), spatial_dims=3), [(2, 2, 2), (2, 2, 2)]),
    ):
        layer = uk.build(spec, data_format="channels_last")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for size in sizes:
                layer(np.zeros((1, *size, 2), np.float32))
        messages = [str(w.message) for w in caught if issubclass(w.category, upsample.UpsampleWarning)]
        assert len(messages) == len(set(sizes)), messages
        assert all("dead" in m for m in messages), messages
        assert f"on a {'x'.join(map(str, sizes[0]))} input" in messages[0]


UNKNOWN_SIZE = list(
    {  # the first spec with a residual of each kind and rank (a linear resize needs static sizes)
        (s.KIND, s.spatial_dims): s
        for s in reversed(SPECS)
        if s.residual is not None and getattr(s, "method", None) != "bilinear"
    }.values()
)


@pytest.mark.parametrize("spec", UNKNOWN_SIZE, ids=[f"{s.KIND}-{s.spatial_dims}d-{s.residual}" for s in UNKNOWN_SIZE])
def test_unknown_spatial_sizes(spec: Spec) -> None:
    """A functional model on ``keras.Input`` with every spatial size unknown; on TensorFlow also a ``tf.function``
    traced once for unknown sizes (as a SavedModel signature is), so the crops, the shuffle and the residual's
    gather run on sizes known only at run time. Both give the reference's numbers on every size."""
    rank = spec.spatial_dims
    w = weights(spec, seed=6)
    layer = uk.build(spec, weights=w, data_format="channels_last")
    inputs_ = keras.Input((None,) * rank + (spec.in_channels,))
    outputs = layer(inputs_)
    assert tuple(outputs.shape) == (None,) * (rank + 1) + (spec.out_channels,)
    model = keras.Model(inputs_, outputs)
    traced = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec((None,) * (rank + 1) + (spec.in_channels,), tf.float32)]
        traced = tf.function(layer, input_signature=signature)
    for size in SIZES[rank]:
        x, _ = inputs(spec, size)  # type: ignore[arg-type]
        want = upsample.reference.forward(spec, w, x)
        for run in (model, traced):
            if run is not None:
                np.testing.assert_allclose(keras.ops.convert_to_numpy(run(x)), want, rtol=RTOL, atol=ATOL)


def test_symbolic_shapes_of_any_rank() -> None:
    for spec in (SPECS[0], next(s for s in SPECS if s.spatial_dims == 3 and s.KIND == "transposed" and s.residual)):
        layer = uk.build(spec, data_format="channels_first")
        rank = spec.spatial_dims
        assert layer.compute_output_shape((None, spec.in_channels, *(None,) * rank)) == (
            None,
            spec.out_channels,
            *(None,) * rank,
        )


HEADS = {
    "1d-transposed-batch": upsample.plan(8, (32,), 3, "transposed", norm="batch", final_activation="tanh"),
    "1d-resize-bilinear-group": upsample.plan(
        8, 16, 3, "resize", method="bilinear", norm=Norm("group", groups=2), input_size=4, spatial_dims=1
    ),
    "3d-subpixel-batch": upsample.plan(4, 8, 2, "subpixel", norm="batch", input_size=(2, 2, 2)),
    "3d-transposed-instance": upsample.plan(4, (4, 4, 4), 2, "transposed", norm="instance", final_activation="tanh"),
}


HEAD_CASES = [(name, ("channels_last", "channels_first")[i % 2]) for i, name in enumerate(HEADS)]


@pytest.mark.parametrize(("name", "data_format"), HEAD_CASES, ids=[f"{n}-{f}" for n, f in HEAD_CASES])
def test_head_in_training_mode_matches_reference(name: str, data_format: str) -> None:
    """Training-mode output, input gradient and the running statistics after the pass, against the reference."""
    from head_cases import assert_gradients_close
    from test_head_keras import canonical, differentiate

    spec = HEADS[name]
    w = head_weights(spec)
    (x, grad_y), *_ = batches(spec, 1)
    head = spec.build("keras", weights=w, data_format=data_format)
    channels_first = data_format == "channels_first"
    feed = (first(x), first(grad_y)) if channels_first else (x, grad_y)
    y, grad_x, grads, updated = differentiate(head, *feed, True)
    y, grad_x = (keras.ops.convert_to_numpy(a) for a in (y, grad_x))
    want_y, want_weights = head_reference.forward(spec, w, x, training=True)
    want_grad_x, want_grads = head_reference.vjp(spec, w, x, grad_y, training=True)
    np.testing.assert_allclose(last(y) if channels_first else y, want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(last(grad_x) if channels_first else grad_x, want_grad_x, rtol=RTOL, atol=ATOL)
    assert_gradients_close(spec, canonical(spec, grads, data_format), want_grads, len(x))
    for variable, value in zip(head.non_trainable_variables, updated, strict=True):
        variable.assign(value)
    assert_weights_close(keras_head.get_weights(head), want_weights, "after the pass")
    # inference mode then reads the updated running statistics
    want_eval, _ = head_reference.forward(spec, want_weights, x, training=False)
    got_eval = keras.ops.convert_to_numpy(head(feed[0], training=False))
    np.testing.assert_allclose(last(got_eval) if channels_first else got_eval, want_eval, rtol=RTOL, atol=ATOL)


def test_head_from_native_at_ranks_1_and_3() -> None:
    """A ``keras.Sequential`` of 1-D and of 3-D stages reads back as a head computing the same outputs."""
    for rank in (1, 3):
        keras.utils.set_random_seed(rank)
        shape = (4,) * rank + (3,)
        model = keras.Sequential(
            [
                keras.Input(shape),
                getattr(keras.layers, f"Conv{rank}DTranspose")(4, 4, strides=2, padding="same"),
                keras.layers.GroupNormalization(groups=2),
                keras.layers.ReLU(),
                getattr(keras.layers, f"UpSampling{rank}D")(2),
                getattr(keras.layers, f"Conv{rank}D")(2, 3, padding="same"),
            ]
        )
        spec, w = uk.from_native(model)
        assert spec.spatial_dims == rank
        x = np.random.default_rng(rank).normal(size=(2, *shape)).astype(np.float32)
        want = keras.ops.convert_to_numpy(model(x))
        got = keras.ops.convert_to_numpy(spec.build("keras", weights=w, data_format="channels_last")(x))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(head_reference.forward(spec, w, x)[0], want, rtol=RTOL, atol=ATOL)
