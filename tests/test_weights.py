"""Canonical weights: checks, seeded schemes, and safetensors files that fail cleanly."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import upsample
from upsample import UpsampleSpec, Weights, WeightsFileError, init_weights, load_weights, save_weights

SPECS = [
    UpsampleSpec(3, 5, kernel_size=(2, 3), stride=2, padding=((1, -1), (0, 2)), residual="projection"),
    UpsampleSpec(4, kernel_size=4, residual="nearest", use_bias=False),
    UpsampleSpec(2, 7, kernel_size=1),
]


@pytest.mark.parametrize("scheme", upsample.weights.SCHEMES)
def test_init_is_deterministic_and_shaped(scheme: str) -> None:
    spec = UpsampleSpec(6, kernel_size=3, stride=2, residual="projection")
    first, again = init_weights(spec, seed=7, scheme=scheme), init_weights(spec, seed=7, scheme=scheme)
    assert first.check(spec) is first
    assert first.allclose(again, rtol=0)
    if scheme not in ("zeros", "bilinear"):
        assert not np.allclose(first.kernel, init_weights(spec, seed=8, scheme=scheme).kernel)


def test_uniform_schemes_respect_their_limits() -> None:
    spec = UpsampleSpec(40, 30, kernel_size=(3, 4))
    fan_in, fan_out = 3 * 4 * 30, 3 * 4 * 40  # Keras/torch convention for a transposed conv kernel
    he = init_weights(spec, scheme="he_uniform").kernel
    glorot = init_weights(spec, scheme="glorot_uniform").kernel
    assert np.abs(he).max() <= math.sqrt(6 / fan_in) and np.abs(he).max() > 0.95 * math.sqrt(6 / fan_in)
    assert np.abs(glorot).max() <= math.sqrt(6 / (fan_in + fan_out))
    assert abs(he.std() - math.sqrt(2 / fan_in)) < 0.05 * math.sqrt(2 / fan_in)  # uniform(-l, l) has std l/sqrt(3)
    lecun = init_weights(spec, scheme="lecun_normal").kernel
    assert abs(lecun.std() - math.sqrt(1 / fan_in)) < 0.05 * math.sqrt(1 / fan_in)
    assert np.abs(lecun).max() <= 2 * math.sqrt(1 / fan_in) / 0.87962566103423978 + 1e-6
    assert not init_weights(spec, scheme="zeros").kernel.any()


def test_bilinear_upsamples_a_constant_to_a_constant() -> None:
    # The FCN kernel with k = 2f, s = f, crop f/2 interpolates: a constant image stays constant inside.
    for factor in (2, 3, 4):
        spec = UpsampleSpec.for_size(2, 6 * factor, input_size=6)
        weights = init_weights(spec, scheme="bilinear", dtype=np.float64)
        y = upsample.reference.forward(spec, weights, np.ones((1, 6, 6, 2)))
        inner = y[0, factor:-factor, factor:-factor]
        np.testing.assert_allclose(inner, 1.0, rtol=1e-12)
        assert not weights.kernel[:, :, 0, 1].any()  # off-diagonal channels stay zero
    with pytest.raises(ValueError, match="needs in_channels == out_channels, got 2 and 3"):
        init_weights(UpsampleSpec(2, 3, kernel_size=4), scheme="bilinear")


def test_init_rejects_bad_arguments() -> None:
    spec = UpsampleSpec(2, kernel_size=2)
    with pytest.raises(ValueError, match="scheme must be one of .* got 'he_normal'"):
        init_weights(spec, scheme="he_normal")
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        init_weights(spec, seed=-1)


def test_check_names_the_array_and_shapes() -> None:
    spec = SPECS[0]
    good = init_weights(spec)
    with pytest.raises(ValueError, match=r"weights.skip has no array; the spec needs shape \(3, 5\)"):
        Weights(good.kernel, good.bias).check(spec)
    with pytest.raises(ValueError, match=r"weights.bias has shape \(5,\); the spec needs absent"):
        Weights(good.kernel, good.bias, good.skip).check(
            UpsampleSpec(3, 5, kernel_size=(2, 3), use_bias=False, residual="projection")
        )
    with pytest.raises(TypeError, match="weights.kernel must be a floating array, got dtype int64"):
        Weights(good.kernel.astype(np.int64), good.bias, good.skip).check(spec)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_safetensors_round_trip(tmp_path: Path, spec: UpsampleSpec, dtype: type) -> None:
    weights = init_weights(spec, seed=3, dtype=dtype)
    path = tmp_path / "w.safetensors"
    save_weights(path, spec, weights)
    loaded_spec, loaded = load_weights(path)
    assert loaded_spec == spec
    assert loaded.allclose(weights, rtol=0) and loaded.kernel.dtype == dtype


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "w.safetensors"
    save_weights(path, SPECS[0], init_weights(SPECS[0]))
    return path


def test_truncated_and_garbage_files_fail_cleanly(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    data = path.read_bytes()
    for name, content in {
        "truncated": data[: len(data) // 2],
        "header-only": data[:8],
        "noise": b"\x00" * 3 + b"hello",
    }.items():
        broken = tmp_path / f"{name}.safetensors"
        broken.write_bytes(content)
        with pytest.raises(WeightsFileError, match="is not a readable safetensors file"):
            load_weights(broken)


def test_pickle_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):  # noqa: ANN204 - a pickle that would create a file if ever loaded
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(WeightsFileError):
        load_weights(path)
    assert not marker.exists()


def test_mismatched_and_foreign_files_fail_cleanly(tmp_path: Path) -> None:
    spec = SPECS[0]
    weights = init_weights(spec)
    meta = {"upsample.format": "1", "upsample.spec": spec.to_json()}
    cases = {
        "wrong-shape": (
            {"kernel": np.zeros((1, 1, 3, 5), np.float32), "bias": weights.bias, "skip": weights.skip},
            meta,
            "does not match its own spec",
        ),
        "extra-tensor": (
            {"kernel": weights.kernel, "bias": weights.bias, "skip": weights.skip, "x": weights.bias},
            meta,
            r"unexpected tensors \['x'\]",
        ),
        "no-kernel": ({"bias": weights.bias}, meta, "has no 'kernel' tensor"),
        "no-metadata": ({"kernel": weights.kernel}, None, "has no upsample metadata"),
        "new-version": ({"kernel": weights.kernel}, {**meta, "upsample.format": "9"}, "format version '9'"),
        "bad-spec": (
            {"kernel": weights.kernel},
            {**meta, "upsample.spec": '{"version": 1}'},
            "carries an invalid spec",
        ),
    }
    for name, (tensors, metadata, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        with pytest.raises(WeightsFileError, match=message):
            load_weights(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")


def test_repr_shows_shapes_and_dtypes_not_values() -> None:
    spec = UpsampleSpec(64, 32, kernel_size=16, residual="projection")
    text = repr(init_weights(spec))
    assert text == "Weights(kernel=float32[16, 16, 64, 32], bias=float32[32], skip=float32[64, 32])"


def test_input_size_is_recorded_when_given(tmp_path: Path) -> None:
    from upsample.weights import saved_input_size

    spec = UpsampleSpec.for_size(3, 8, input_size=4)
    save_weights(tmp_path / "a.safetensors", spec, init_weights(spec), input_size=4)
    save_weights(tmp_path / "b.safetensors", spec, init_weights(spec))
    assert saved_input_size(tmp_path / "a.safetensors") == (4, 4)
    assert saved_input_size(tmp_path / "b.safetensors") is None
    assert load_weights(tmp_path / "a.safetensors")[0] == spec
