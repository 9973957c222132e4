"""Keras 3 adapter tests, run in this process's ``KERAS_BACKEND`` (tensorflow when unset).

Not meant to be collected directly: tests/test_keras_backends.py runs this file once per Keras
backend (tensorflow, jax, torch) in a child process with ``UPSAMPLE_KERAS_CHILD=1``; without that
variable the whole module skips, so an ordinary ``pytest tests/`` runs every Keras test exactly
once per backend. To run one backend by hand:
``UPSAMPLE_KERAS_CHILD=1 KERAS_BACKEND=jax pytest tests/test_keras.py``.

Oracles: the NumPy reference (``reference.forward`` / ``reference.vjp``) and Keras's own
``Conv2DTranspose`` fed the same weights. Gradients come from the backend's own autodiff
(``tf.GradientTape``, ``jax.grad``, ``torch.autograd``), dispatched in :func:`vjp` below: test code
only, the layer itself uses ``keras.ops`` alone.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

JAX_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("UPSAMPLE_KERAS_CHILD") != "1":
    pytest.skip("run once per Keras backend by tests/test_keras_backends.py", allow_module_level=True)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] == "jax":  # XLA's CPU optimisation passes cost more than these tiny graphs ever run
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {JAX_XLA_FLAGS}".strip()

from hypothesis import given, settings  # noqa: E402
from test_keras_backends import require_keras_backend  # noqa: E402

try:
    require_keras_backend(os.environ["KERAS_BACKEND"])
except pytest.skip.Exception as skipped:
    pytest.skip(str(skipped), allow_module_level=True)

import keras  # noqa: E402
from cases import assert_close, cases, random_input, random_weights, sweep, sweep_ids  # noqa: E402

import upsample  # noqa: E402
from upsample import reference  # noqa: E402
from upsample.backends import keras as uk  # noqa: E402
from upsample.backends.keras.transposed import PHASE_SPLIT_BACKENDS  # noqa: E402

BACKEND = keras.backend.backend()
HERE = Path(__file__).resolve().parent
pytestmark = [
    # Keras's convert_to_numpy calls np.array() on framework tensors whose __array__ predates NumPy 2's copy keyword.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    # Many cases have dead pixels on purpose; test_dead_pixel_warning_once_per_input_size checks the warning.
    pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning"),
]


# --- helpers ---------------------------------------------------------------------------------


def to_nchw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2))


def to_nhwc(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1))


Result = tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]


def vjp(layers: Sequence[keras.layers.Layer], x: np.ndarray, grad_y: np.ndarray) -> list[Result]:
    """For each layer, ``(y, d<y, grad_y>/dx, {id(variable): gradient})`` by the backend's autodiff.

    ``x`` and ``grad_y`` are in the layers' layout. On JAX all layers go through one ``jax.jit``:
    compiling once is far cheaper than JAX's op-by-op eager compiles, and dominates the run time.
    """
    variables = [list(layer.trainable_variables) for layer in layers]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        results = []
        for layer, own in zip(layers, variables, strict=True):
            x_t = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(x_t)
                y = layer(x_t)
                loss = tf.reduce_sum(y * grad_y)
            results.append((y, *tape.gradient(loss, [x_t, [v.value for v in own]])))
    elif BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def loss(values: list, xs: list) -> tuple[Any, list]:
            ys = [
                layer.stateless_call(own, [v.value for v in layer.non_trainable_variables], x_j)[0]
                for layer, own, x_j in zip(layers, values, xs, strict=True)
            ]
            return sum(jnp.sum(y_j * grad_y) for y_j in ys), ys

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (_, ys), (grads, grad_xs) = step([[v.value for v in own] for own in variables], [x] * len(layers))
        results = list(zip(ys, grad_xs, grads, strict=True))
    elif BACKEND == "torch":
        import torch

        results = []
        for layer, own in zip(layers, variables, strict=True):
            x_t = torch.tensor(x, requires_grad=True)
            y = layer(x_t)
            grad_x, *grads = torch.autograd.grad((y * torch.tensor(grad_y)).sum(), [x_t, *(v.value for v in own)])
            results.append((y, grad_x, grads))
    else:
        raise NotImplementedError(f"no gradient helper for Keras backend {BACKEND!r}")
    numpy = keras.ops.convert_to_numpy
    return [
        (numpy(y), numpy(grad_x), {id(v): numpy(g) for v, g in zip(own, grads, strict=True)})
        for (y, grad_x, grads), own in zip(results, variables, strict=True)
    ]


def canonical_grads(layer: uk.Upsample, grads: dict[int, np.ndarray]) -> upsample.Weights:
    """Gradients of an ``Upsample`` layer's variables in the canonical weight layout."""
    skip = layer.skip
    return upsample.Weights(
        grads[id(layer.conv.kernel)].transpose(0, 1, 3, 2),
        None if layer.conv.bias is None else grads[id(layer.conv.bias)],
        None if skip is None else grads[id(skip.kernel)][0, 0],
    )


def has_output(spec: upsample.UpsampleSpec, size: tuple[int, int]) -> bool:
    """Whether ``spec`` gives a non-empty output for an input of ``size``."""
    try:
        spec.output_size(size)
    except ValueError:
        return False
    return True


def check_against_reference(spec: upsample.UpsampleSpec, size: tuple[int, int], batch: int, seed: int) -> None:
    """Forward pass and every gradient of an NHWC layer against ``reference.forward`` / ``reference.vjp``.

    Checked with ``fast_path`` on and off where it changes the code: a 1x1 input, and a larger one on the
    backends that take the phase split (``PHASE_SPLIT_BACKENDS``).
    """
    weights = random_weights(spec, seed)
    x = random_input(spec, batch, size, seed)
    grad_y = np.random.default_rng(seed + 2).normal(size=(batch, *spec.output_size(size), spec.out_channels))
    both = size == (1, 1) or keras.backend.backend() in PHASE_SPLIT_BACKENDS
    layers = [
        uk.Upsample(spec, weights=weights, data_format="channels_last", fast_path=fast_path)
        for fast_path in ((True, False) if both else (True,))
    ]
    results = vjp(layers, x, grad_y.astype(np.float32))
    expected_y = reference.forward(spec, weights, x)
    expected_x, expected_w = reference.vjp(spec, weights, x, grad_y)
    for layer, (y, grad_x, grads) in zip(layers, results, strict=True):
        path = f"fast_path={layer.fast_path}"
        assert_close(y, expected_y, f"forward, {path}", spec)
        assert_close(grad_x, expected_x, f"grad x, {path}", spec)
        actual_w = canonical_grads(layer, grads).arrays()
        for name, actual, expected in zip(("kernel", "bias", "skip"), actual_w, expected_w.arrays(), strict=True):
            assert (actual is None) == (expected is None), name
            if actual is not None:
                assert_close(actual, expected, f"grad {name}, {path}", spec)


# --- the layer against the reference ---------------------------------------------------------


@pytest.mark.parametrize(("seed", "spec", "size"), [(i, *case) for i, case in enumerate(sweep())], ids=sweep_ids())
def test_sweep_against_reference(seed: int, spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    check_against_reference(spec, size, batch=2, seed=seed)


@settings(max_examples=50, deadline=None)
@given(cases())
def test_random_cases_against_reference(case: tuple[upsample.UpsampleSpec, tuple[int, int], int, int]) -> None:
    spec, size, batch, seed = case
    check_against_reference(spec, size, batch, seed)


@pytest.mark.parametrize("batch", [1, 2, 3, 7])
def test_fast_path_both_operand_orders(batch: int) -> None:
    """On TensorFlow the 1x1 product puts the kernel on the right from a batch of ``C_in / 2`` (2) on."""
    spec = upsample.UpsampleSpec(4, 3, kernel_size=(3, 2), stride=2, padding=((1, -1), (0, 1)), residual="projection")
    check_against_reference(spec, (1, 1), batch, batch)


SINGLE_CHANNEL = [
    upsample.UpsampleSpec(1, 3, kernel_size=(1, 2)),
    upsample.UpsampleSpec(1, 3, kernel_size=2),
    upsample.UpsampleSpec(1, 2, kernel_size=4, stride=2, padding="same"),  # Keras "same", run natively
    upsample.UpsampleSpec(1, 1, kernel_size=3, stride=2, padding=((1, -1), (0, 2))),  # slice and pad
]


@pytest.mark.parametrize("spec", SINGLE_CHANNEL, ids=lambda spec: f"{spec.kernel_size}-{spec.crops}")
@pytest.mark.parametrize("size", [(1, 1), (2, 3)])
def test_batch_of_one_with_one_channel(spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    """Issue 13: on the torch backend the native layer's backward raised "grad_weight needs to be
    contiguous" for a batch of 1 with one input channel; ours must train there on every backend."""
    check_against_reference(spec, size, batch=1, seed=3)


@pytest.mark.parametrize(("seed", "spec", "size"), [(i, *case) for i, case in enumerate(sweep())][1::6])
def test_phase_split_on_every_backend(
    seed: int, spec: upsample.UpsampleSpec, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The phase split is written with ``keras.ops`` alone: forced on this backend, it matches the reference
    (it is chosen only where it measured faster, so the sweep above runs it on JAX only)."""
    monkeypatch.setattr(uk.transposed, "PHASE_SPLIT_BACKENDS", (keras.backend.backend(),))
    check_against_reference(spec, size if size != (1, 1) else (2, 3), batch=2, seed=seed)


def test_symmetric_same_runs_natively() -> None:
    """DCGAN's k4 s2 "same" is Keras's own layer with ``padding="same"``; a one-pixel-shift "same" is not."""
    dcgan = uk.Upsample(upsample.UpsampleSpec(3, 2, kernel_size=4, stride=2, padding="same"))
    shifted = uk.Upsample(upsample.UpsampleSpec(3, 2, kernel_size=3, stride=2, padding="same"))
    assert (dcgan.conv.padding, dcgan.conv.output_padding) == ("same", None)
    assert shifted.conv.padding == "valid"
    check_against_reference(dcgan.spec, (3, 2), 2, 5)


# --- the layer against Keras's own Conv2DTranspose -------------------------------------------

NATIVE_GRID = [
    (k, s, mode, op)
    for k, s in itertools.product(range(1, 6), range(1, 5))
    for mode in ("same", "valid")
    for op in (None, *range(s))
]


@pytest.mark.parametrize(("k", "s", "mode", "output_padding"), NATIVE_GRID)
def test_native_conv2d_transpose(k: int, s: int, mode: str, output_padding: int | None) -> None:
    """Same forward and gradients as ``Conv2DTranspose(k, s, mode, output_padding)`` with the same weights.

    The native layer is also compared with the reference for the spec's crops, which checks
    ``geometry.crop_from_keras`` against what Keras really computes on this backend, and
    ``from_native`` must give back the same spec.
    """
    spec = upsample.UpsampleSpec(3, 4, kernel_size=k, stride=s, padding=mode, output_padding=output_padding)
    weights = random_weights(spec, k * 10 + s)
    size = (1, 1) if (k + s) % 2 and has_output(spec, (1, 1)) else (2, 3)  # 1x1 and larger inputs in turn
    x = random_input(spec, 2, size, k)
    native = keras.layers.Conv2DTranspose(
        4, k, strides=s, padding=mode, output_padding=output_padding, kernel_initializer="zeros"
    )
    native.build((None, *size, 3))
    native.kernel.assign(weights.kernel.transpose(0, 1, 3, 2))
    native.bias.assign(weights.bias)
    converted_spec, converted = uk.from_native(native)
    assert converted_spec == spec
    assert converted.allclose(weights)

    try:
        native(x)
    except Exception as error:  # each backend raises its own error type
        # Keras builds this layer, but TensorFlow's SAME transposed conv needs in == ceil(out / s), and Keras's
        # "same" + output_padding asks for out = (in - 1) * s + k % 2 + output_padding: an even k with 0 fails.
        if not (BACKEND == "tensorflow" and mode == "same" and output_padding == 0 and k % 2 == 0):
            raise
        pytest.skip(f"Keras's own Conv2DTranspose fails on {BACKEND}: {' '.join(str(error).split())[:250]}")
    ours = uk.Upsample(spec, weights=weights, data_format="channels_last")
    grad_y = np.random.default_rng(s).normal(size=(2, *spec.output_size(size), 4)).astype(np.float32)
    (y, grad_x, grads), (y_native, grad_x_native, grads_native) = vjp([ours, native], x, grad_y)
    assert_close(y_native, reference.forward(spec, weights, x), "native Keras vs reference (crop_from_keras)", spec)
    assert_close(y, y_native, "forward vs native", spec)
    assert_close(grad_x, grad_x_native, "grad x vs native", spec)
    assert_close(grads[id(ours.conv.kernel)], grads_native[id(native.kernel)], "grad kernel vs native", spec)
    assert_close(grads[id(ours.conv.bias)], grads_native[id(native.bias)], "grad bias vs native", spec)


# --- layouts, shapes, models -----------------------------------------------------------------

LAYOUT_CASES = [
    (upsample.UpsampleSpec(3, 5, kernel_size=4, stride=2, padding=((1, -1), (0, 2)), residual="projection"), (1, 1)),
    (upsample.UpsampleSpec(3, 5, kernel_size=4, stride=2, padding=((1, -1), (0, 2)), residual="projection"), (3, 2)),
    (
        upsample.UpsampleSpec(
            4, kernel_size=(3, 2), stride=(2, 3), padding="valid", output_padding=1, residual="nearest"
        ),
        (2, 3),
    ),
    (upsample.UpsampleSpec(4, 2, kernel_size=5, stride=3, padding="same"), (1, 1)),
]


@pytest.mark.parametrize(("spec", "size"), LAYOUT_CASES)
def test_channels_first_is_channels_last_transposed(spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    weights = random_weights(spec, 3)
    x = random_input(spec, 2, size, 3)
    grad_y = np.random.default_rng(0).normal(size=(2, *spec.output_size(size), spec.out_channels)).astype(np.float32)
    last = uk.Upsample(spec, weights=weights, data_format="channels_last")
    first = uk.Upsample(spec, weights=weights, data_format="channels_first")
    [(y, grad_x, grads)] = vjp([last], x, grad_y)
    [(y_first, grad_x_first, grads_first)] = vjp([first], to_nchw(x), to_nchw(grad_y))
    assert_close(to_nhwc(y_first), y, "channels_first forward", spec)
    assert_close(to_nhwc(grad_x_first), grad_x, "channels_first grad x", spec)
    pairs = zip(canonical_grads(first, grads_first).arrays(), canonical_grads(last, grads).arrays(), strict=True)
    for mine, theirs in pairs:
        if mine is not None:
            assert_close(mine, theirs, "channels_first weight grads", spec)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize(("spec", "size"), LAYOUT_CASES)
def test_compute_output_shape_is_exact(spec: upsample.UpsampleSpec, size: tuple[int, int], data_format: str) -> None:
    layer = uk.Upsample(spec, data_format=data_format)
    x = random_input(spec, 3, size, 0)
    if data_format == "channels_first":
        x = to_nchw(x)
    assert layer.compute_output_shape(x.shape) == tuple(layer(x).shape)
    symbolic = (None, *x.shape[1:])
    out = spec.output_size(size)
    expected = (None, *out, spec.out_channels) if data_format == "channels_last" else (None, spec.out_channels, *out)
    assert layer.compute_output_shape(symbolic) == expected


def test_functional_and_sequential_models() -> None:
    spec = upsample.UpsampleSpec.for_size(6, 8, out_channels=4, residual="projection")
    second = upsample.UpsampleSpec(4, 3, kernel_size=4, stride=2, padding=1)
    w1, w2 = random_weights(spec, 1), random_weights(second, 2)
    x = random_input(spec, 5, (1, 1), 0)
    expected = reference.forward(second, w2, reference.forward(spec, w1, x).astype(np.float32))

    inputs = keras.Input((1, 1, 6))
    hidden = uk.Upsample(spec, weights=w1)(inputs)
    assert tuple(hidden.shape) == (None, 8, 8, 4)
    functional = keras.Model(inputs, uk.Upsample(second, weights=w2)(hidden))
    sequential = keras.Sequential(
        [keras.Input((1, 1, 6)), uk.Upsample(spec, weights=w1), uk.Upsample(second, weights=w2)]
    )
    for model in (functional, sequential):
        assert model.output_shape == (None, 16, 16, 3)
        assert_close(model.predict(x, verbose=0), expected, f"{type(model).__name__} predict", second)


def test_save_and_load_in_a_fresh_process(tmp_path: Path) -> None:
    """A ``.keras`` file loads in a new process (no custom_objects) and gives identical outputs."""
    spec = upsample.UpsampleSpec(5, 3, kernel_size=3, stride=2, padding=((1, -1), (0, 2)), residual="projection")
    second = upsample.UpsampleSpec(3, kernel_size=2, stride=2, padding="same", residual="nearest", use_bias=False)
    model = keras.Sequential(
        [
            keras.Input((5, 2, 3)),
            uk.Upsample(spec, weights=random_weights(spec, 4), data_format="channels_first", fast_path=False),
            uk.Upsample(second, weights=random_weights(second, 5), data_format="channels_first"),
        ]
    )
    x = to_nchw(random_input(spec, 2, (2, 3), 1))
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    paths = [str(tmp_path / name) for name in ("model.keras", "x.npy", "y.npy")]
    result = subprocess.run(
        [sys.executable, str(HERE / "keras_model_roundtrip.py"), *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    np.testing.assert_array_equal(np.load(paths[2]), expected)

    config = model.layers[0].get_config()
    restored = uk.Upsample.from_config(config)
    assert (restored.spec, restored.data_format, restored.fast_path) == (spec, "channels_first", False)


def test_fit_lowers_the_loss() -> None:
    keras.utils.set_random_seed(0)
    spec = upsample.UpsampleSpec.for_size(4, 6, out_channels=3, residual="projection")
    model = keras.Sequential([keras.Input((1, 1, 4)), uk.build(spec)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 1, 1, 4)).astype(np.float32)
    y = rng.normal(size=(32, 6, 6, 3)).astype(np.float32)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.95 * before


@pytest.mark.parametrize("fast_path", [True, False])
def test_mixed_bfloat16_policy(fast_path: bool) -> None:
    spec = upsample.UpsampleSpec(8, 6, kernel_size=3, stride=2, padding=((0, -1), (1, 1)), residual="projection")
    weights = random_weights(spec, 0)
    x = random_input(spec, 2, (1, 1), 0)
    layer = uk.Upsample(spec, weights=weights, fast_path=fast_path, dtype="mixed_bfloat16")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert {keras.backend.standardize_dtype(v.dtype) for v in layer.weights} == {"float32"}
    assert_close(
        keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")),
        reference.forward(spec, weights, x),
        "mixed_bfloat16 forward",
        spec,
        rtol=3e-2,
        atol=3e-2,
    )


# --- weights, registry, conversion -----------------------------------------------------------


def test_weights_round_trip_and_keras_layout() -> None:
    spec = upsample.UpsampleSpec(3, 5, kernel_size=(2, 4), stride=2, residual="projection")
    weights = random_weights(spec, 7)
    layer = spec.build("keras", weights=weights)
    assert isinstance(layer, uk.Upsample)
    assert uk.get_weights(layer).allclose(weights)
    assert [tuple(v.shape) for v in layer.weights] == [(2, 4, 5, 3), (5,), (1, 1, 3, 5)]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.conv.kernel), weights.kernel.transpose(0, 1, 3, 2))
    other = random_weights(spec, 8)
    uk.set_weights(layer, other)
    assert uk.get_weights(layer).allclose(other)
    with pytest.raises(ValueError, match="weights.kernel"):
        uk.set_weights(layer, upsample.Weights(weights.kernel[:1], weights.bias, weights.skip))


def test_default_initialisation_builds_every_weight() -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=3, stride=2, residual="projection", use_bias=False)
    layer = uk.Upsample(spec)
    weights = uk.get_weights(layer).check(spec)
    assert np.abs(weights.kernel).max() > 0 and np.abs(weights.skip).max() > 0
    assert [v.path for v in layer.weights] == [f"{layer.name}/conv/kernel", f"{layer.name}/skip/kernel"]


def test_from_native_refuses_what_a_spec_cannot_express() -> None:
    with pytest.raises(TypeError, match="Conv2DTranspose"):
        uk.from_native(keras.layers.Conv2D(3, 2))
    with pytest.raises(ValueError, match="not built"):
        uk.from_native(keras.layers.Conv2DTranspose(3, 2))
    activated = keras.layers.Conv2DTranspose(3, 2, activation="relu")
    activated.build((None, 4, 4, 2))
    with pytest.raises(ValueError, match="activation"):
        uk.from_native(activated)


def test_from_native_channels_first() -> None:
    """The Keras kernel layout does not depend on data_format (TensorFlow cannot run this native layer on CPU)."""
    native = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", data_format="channels_first")
    native.build((None, 2, 4, 4))
    spec, weights = uk.from_native(native)
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 4)).astype(np.float32)
    ours = uk.Upsample(spec, weights=weights, data_format="channels_first")
    expected = to_nchw(reference.forward(spec, weights, to_nhwc(x)))
    assert_close(keras.ops.convert_to_numpy(ours(x)), expected, "from_native NCHW", spec)


# --- input checks and warnings ---------------------------------------------------------------


def test_input_errors_name_the_problem() -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=2, stride=2)
    layer = uk.Upsample(spec, data_format="channels_last")
    with pytest.raises(ValueError, match=r"is this NCHW\?.*data_format='channels_last'"):
        layer(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="rank-4"):
        layer(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="floating dtype, got int32"):
        layer(np.zeros((1, 2, 2, 3), np.int32))
    with pytest.raises(ValueError, match="data_format must be"):
        uk.Upsample(spec, data_format="NHWC")
    with pytest.raises(TypeError, match="spec must be an upsample UpsampleSpec, got dict.*load_spec"):
        uk.Upsample({"in_channels": 3})
    with pytest.raises(TypeError, match="upsample.backends.keras.Upsample"):
        uk.get_weights(keras.layers.Conv2DTranspose(3, 2))
    with pytest.raises(TypeError, match="weights must be an upsample.Weights, got dict"):
        uk.set_weights(layer, {"kernel": np.zeros((2, 2, 3, 4))})
    with pytest.raises(TypeError, match="weights must be an upsample.Weights, got dict"):
        spec.build("keras", weights={"kernel": np.zeros((2, 2, 3, 4))})
    with pytest.raises(ValueError, match="weights of UpsampleSpec would be"):
        uk.Upsample(upsample.UpsampleSpec(10**5, 10**5, kernel_size=64))


UNKNOWN_SIZE = [
    upsample.UpsampleSpec(3, 4, kernel_size=4, stride=2, padding=1),  # native "same"
    upsample.UpsampleSpec(3, 3, kernel_size=3, stride=2, padding=((1, -1), (0, 2)), residual="nearest"),
    upsample.UpsampleSpec(3, 2, kernel_size=(2, 3), stride=(3, 2), padding="same", residual="projection"),
]


@pytest.mark.parametrize("spec", UNKNOWN_SIZE, ids=lambda spec: f"{spec.kernel_size}-{spec.crops}-{spec.residual}")
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_unknown_spatial_size_in_a_functional_model(spec: upsample.UpsampleSpec, data_format: str) -> None:
    """Issue 13: a fully convolutional decoder takes ``keras.Input((None, None, C))``, as with the native
    ``Conv2DTranspose``; the model then runs on any size, each against the reference."""
    weights = random_weights(spec, 21)
    shape = (None, None, spec.in_channels) if data_format == "channels_last" else (spec.in_channels, None, None)
    inputs = keras.Input(shape)
    outputs = uk.Upsample(spec, weights=weights, data_format=data_format)(inputs)
    assert outputs.shape[1:3] == (None, None) if data_format == "channels_last" else outputs.shape[2:] == (None, None)
    model = keras.Model(inputs, outputs)
    for size in [(1, 1), (3, 5), (4, 4)]:
        x = random_input(spec, 2, size, 21)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)
            y = model(x if data_format == "channels_last" else to_nchw(x))
        y = keras.ops.convert_to_numpy(y)
        y = y if data_format == "channels_last" else to_nhwc(y)
        assert_close(y, reference.forward(spec, weights, x), f"unknown size, {size}", spec)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a graph traced with unknown sizes: TensorFlow")
@pytest.mark.parametrize("spec", UNKNOWN_SIZE, ids=lambda spec: f"{spec.kernel_size}-{spec.crops}-{spec.residual}")
def test_traced_with_unknown_spatial_size(spec: upsample.UpsampleSpec) -> None:
    """A ``tf.function`` traced once for ``(None, None, None, C)`` (as a SavedModel signature is) gives the
    reference's numbers on every size it is then called with: the crops and the residual's gather run on
    sizes known only at run time."""
    import tensorflow as tf

    weights = random_weights(spec, 22)
    layer = uk.Upsample(spec, weights=weights)
    traced = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, spec.in_channels), tf.float32)])
    for size in [(2, 3), (5, 4)]:
        x = random_input(spec, 2, size, 22)
        assert_close(traced(x).numpy(), reference.forward(spec, weights, x), f"traced, {size}", spec)


def test_dead_pixel_warning_once_per_input_size() -> None:
    spec = upsample.UpsampleSpec(2, kernel_size=2, stride=4)  # 1x1 -> 2x2 full coverage, 3x3 -> 10x10 with gaps
    layer = uk.Upsample(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", upsample.UpsampleWarning)
        layer(random_input(spec, 1, (1, 1), 0))
    with pytest.warns(upsample.UpsampleWarning, match="dead") as record:
        layer(random_input(spec, 1, (3, 3), 0))
    assert record[0].filename == __file__  # the user's call, not Keras's traceback filtering
    with warnings.catch_warnings():
        warnings.simplefilter("error", upsample.UpsampleWarning)
        layer(random_input(spec, 2, (3, 3), 0))


def test_build_without_weights_is_the_canonical_init() -> None:
    """Issue 14: one rule in every backend: ``spec.build(backend)`` holds ``init_weights(spec, seed=0)``."""
    spec = upsample.UpsampleSpec(3, 4, kernel_size=3, stride=2, residual="projection")
    assert uk.get_weights(spec.build("keras")).allclose(upsample.init_weights(spec, seed=0))


def test_kernel_regularizer_and_constraint_apply_on_every_path() -> None:
    """Issue 14 (the class of torch's hook bypass): a regularizer and a constraint set on ``conv.kernel``
    act on the variable, which the 1x1 fast path reads, so fast and native paths train alike."""
    spec = upsample.UpsampleSpec(3, 2, kernel_size=3, stride=2)
    weights = random_weights(spec, 41)
    x = random_input(spec, 4, (1, 1), 41)
    y = np.random.default_rng(41).normal(size=(4, 3, 3, 2)).astype(np.float32)
    kernels, losses = [], []
    for fast_path in (True, False):
        layer = uk.Upsample(spec, weights=weights, fast_path=fast_path, data_format="channels_last")
        layer.conv.kernel.regularizer = keras.regularizers.L2(0.5)
        layer.conv.kernel.constraint = keras.constraints.NonNeg()
        model = keras.Sequential([keras.Input((1, 1, 3)), layer])
        losses.append(float(keras.ops.convert_to_numpy(sum(model.losses))))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
        kernels.append(uk.get_weights(layer).kernel)
    assert losses[0] == losses[1] > 0
    np.testing.assert_allclose(kernels[0], kernels[1], rtol=1e-5, atol=1e-6)
    assert kernels[0].min() >= 0  # the constraint ran


@pytest.mark.parametrize(
    "spec",
    [
        upsample.UpsampleSpec(3, 2, kernel_size=3, stride=2, padding=1, residual="projection"),
        upsample.SubpixelSpec(3, 2),
        upsample.ResizeSpec(3, 2, method="bilinear"),
        upsample.plan(4, 8, out_channels=2, norm="batch", input_size=2),
    ],
    ids=["transposed", "subpixel", "resize", "head"],
)
def test_the_runner_reads_nhwc_whatever_the_image_data_format(spec: Any) -> None:
    """``upsample check`` feeds NHWC arrays; a user whose ``keras.json`` says channels_first gets the same
    numbers (the runner's layers, ours and Keras's own, take ``data_format="channels_last"``)."""
    from upsample import crosscheck
    from upsample.runners import keras as runner

    before = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        if isinstance(spec, upsample.HeadSpec):
            from upsample import head_reference

            weights, data = crosscheck.head_check_weights(spec), crosscheck.head_data(spec, steps=1)
            outcome = runner.train_head(spec, weights, data, 0.1)
            expected = head_reference.forward(spec, weights, data[0][0], training=False)[0]
            np.testing.assert_allclose(outcome.y_eval, expected, rtol=1e-4, atol=1e-5)
            return
        weights = upsample.init_weights(spec, seed=1)
        x = np.random.default_rng(0).normal(size=(2, 3, 2, 3)).astype(np.float32)
        y = reference.forward(spec, weights, x)
        grad_y = np.ones_like(y, np.float32)
        outcome = runner.run(spec, weights, x, grad_y, repeats=0)
        np.testing.assert_allclose(outcome.y, y, rtol=1e-4, atol=1e-5)
    finally:
        keras.config.set_image_data_format(before)
