"""``SubpixelSpec`` and ``ResizeSpec`` (issue 15): validation, JSON, ``load_spec``, weights files, coverage,
and the NumPy reference against independent NumPy formulations and its own adjoint identities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from kind_cases import CASES, SWEEP, Spec, case_id, inputs, random_cases, weights

import upsample
from upsample import conv_geometry
from upsample.conv_specs import ResizeSpec, SubpixelSpec


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: SubpixelSpec(0), ValueError, r"in_channels must be positive, got 0"),
        (lambda: SubpixelSpec(2.5), TypeError, r"in_channels must be an int, got 2.5"),
        (lambda: SubpixelSpec(2, scale=0), ValueError, r"scale must be positive, got 0"),
        (
            lambda: SubpixelSpec(2, scale=(1, 2), spatial_dims=1),
            ValueError,
            r"scale has 2 items but spatial_dims=1",
        ),
        (lambda: ResizeSpec(2, kernel_size="3"), TypeError, r"kernel_size must be an int, got '3'"),
        (lambda: ResizeSpec(2, method="lanczos3"), ValueError, r"method must be one of .*got 'lanczos3'"),
        (lambda: ResizeSpec(2, method="x" * 500), ValueError, r"got 'x{10,80}\.\.\.x{10,80}'$"),
        (lambda: SubpixelSpec(2, residual="skip"), ValueError, r"residual must be None.*got 'skip'"),
        (lambda: SubpixelSpec(2, 3, residual="nearest"), ValueError, r"in_channels == out_channels.*'projection'"),
        (lambda: ResizeSpec(2, use_bias="yes"), TypeError, r"use_bias must be a bool, got 'yes'"),
    ],
)
def test_bad_arguments_are_named(make, error, pattern) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.parametrize("spec", SWEEP, ids=case_id)
def test_json_round_trip_and_load_spec(spec: Spec) -> None:
    assert type(spec).from_json(spec.to_json()) == spec
    assert upsample.load_spec(spec.to_json()) == spec
    assert upsample.load_spec(spec.to_dict()) == spec
    assert spec.to_dict()["kind"] == type(spec).KIND
    hash(spec)  # frozen: usable as a key


def test_from_dict_refuses_other_kinds_keys_and_versions() -> None:
    data = SubpixelSpec(2).to_dict()
    with pytest.raises(ValueError, match="spec kind must be 'resize'.*'subpixel'"):
        ResizeSpec.from_dict(data)
    with pytest.raises(ValueError, match=r"unknown spec keys \['stride'\]"):
        SubpixelSpec.from_dict({**data, "stride": [1, 1]})
    with pytest.raises(ValueError, match=r"missing keys \['scale'\]"):
        SubpixelSpec.from_dict({k: v for k, v in data.items() if k != "scale"})
    with pytest.raises(ValueError, match="version 7 is not supported"):
        SubpixelSpec.from_dict({**data, "version": 7})
    with pytest.raises(ValueError, match="spec kind must be one of"):
        upsample.load_spec({**data, "kind": "deconv"})
    transposed = upsample.UpsampleSpec(2, kernel_size=3, stride=2)
    assert upsample.load_spec(transposed.to_json()) == transposed


@pytest.mark.parametrize("spec", SWEEP, ids=case_id)
def test_weights_file_round_trip(spec: Spec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = weights(spec)
    upsample.save_weights(tmp_path / "w.safetensors", spec, w)
    loaded_spec, loaded = upsample.load_weights(tmp_path / "w.safetensors")
    assert loaded_spec == spec and loaded.allclose(w, rtol=0)


@pytest.mark.parametrize(("spec", "size"), CASES, ids=case_id)
def test_sizes_parameters_and_coverage(spec: Spec, size: tuple[int, int]) -> None:
    by_size = getattr(spec, "size", None)
    out = by_size or tuple(int(n * r // 1) for n, r in zip(size, spec.scale, strict=True))
    assert spec.output_size(size) == out
    w = weights(spec)
    assert spec.num_params == sum(a.size for a in w.arrays() if a is not None)
    # coverage = taps reading the (resized) input: the layer itself on ones with an all-ones kernel (a resize alone:
    # the resize of ones, one read per pixel)
    kernel = None if w.kernel is None else np.ones_like(w.kernel)
    bare = type(spec).from_dict({**spec.to_dict(), "residual": None})
    bias = None if w.bias is None else np.zeros_like(w.bias)
    y = upsample.reference.forward(bare, upsample.Weights(kernel, bias), np.ones((1, *size, spec.in_channels)))
    reads = 1 if kernel is None else spec.in_channels
    np.testing.assert_allclose(spec.coverage(size), y[0, :, :, 0] / reads, rtol=1e-12)
    report = spec.diagnose(size)
    assert report.dead == 0 and report.live == y.shape[1] * y.shape[2] and not report.uneven_axes
    assert report.ok == (out != size) and report.not_upsampling == (out == size)


def test_diagnose_notes_for_one_pixel_inputs() -> None:
    resize = ResizeSpec(4, scale=4, method="bilinear").diagnose((1, 1)).verdict
    assert "spatially constant except" in resize and "transposed first stage" in resize and "broadcast" in resize
    assert "kernel's centre tap" in SubpixelSpec(4, kernel_size=3).diagnose((1, 5)).verdict
    assert "note" not in SubpixelSpec(4, kernel_size=1).diagnose((1, 1)).verdict
    assert "note" not in ResizeSpec(4).diagnose((2, 2)).verdict


def test_flops_counts_the_convolution_where_it_runs() -> None:
    # sub-pixel: conv at input size (2x3), 1x1 kernel, 2 -> 2*2*2 channels: 2*6*2*8 + bias 6*8
    assert SubpixelSpec(2, 2, scale=2, kernel_size=1).flops((2, 3)) == 2 * 6 * 2 * 8 + 6 * 8
    # resize: conv at output size (4x6), 3x3 kernel, 2 -> 3: 2*24*9*2*3 + bias 24*3, no bias: the product only
    assert ResizeSpec(2, 3, kernel_size=3).flops((2, 3)) == 2 * 24 * 9 * 2 * 3 + 24 * 3
    assert ResizeSpec(2, 3, kernel_size=3, use_bias=False).flops((2, 3)) == 2 * 24 * 9 * 2 * 3


# --- the reference against independent formulations ----------------------------------------


def _conv_by_windows(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Stride-1 "same" cross-correlation as an einsum over sliding windows."""
    pads = [conv_geometry.same_padding(k) for k in kernel.shape[:2]]
    padded = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[:2], axis=(1, 2))
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel)


def _independent(spec: Spec, w: upsample.Weights, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    bias = 0.0 if w.bias is None else w.bias
    if isinstance(spec, SubpixelSpec):
        z = _conv_by_windows(x, w.kernel) + bias
        batch, height, width, _ = z.shape
        (rh, rw), c = spec.scale, spec.out_channels
        y = z.reshape(batch, height, width, c, rh, rw).transpose(0, 1, 4, 2, 5, 3)  # CRD, as torch PixelShuffle
        y = y.reshape(batch, height * rh, width * rw, c)
    else:
        resized = x
        for axis, scale in ((1, spec.scale[0]), (2, spec.scale[1])):
            if spec.method == "nearest":
                resized = np.repeat(resized, scale, axis=axis)
            else:
                n = resized.shape[axis]
                source = (np.arange(int(n * scale)) + 0.5) / scale - 0.5  # floor(n * scale) pixels
                resized = np.apply_along_axis(lambda v: np.interp(source, np.arange(n), v), axis, resized)  # noqa: B023
        y = resized if w.kernel is None else _conv_by_windows(resized, w.kernel) + bias
    if spec.residual is not None:
        skip = x if w.skip is None else x @ w.skip
        y = y + np.repeat(np.repeat(skip, spec.scale[0], axis=1), spec.scale[1], axis=2)
    return y


DEFAULT_RESIZES = [(spec, size) for spec, size in CASES if not isinstance(spec, ResizeSpec) or spec.method != "cubic"
                   and spec.interpolation == ResizeSpec(1, method=spec.method).interpolation
                   and (spec.integer_scale is not None or spec.method == "linear" and spec.size is None)]  # fmt: skip
"""The resizes the independent formulation below writes out (repeat by an integer; half-pixel ``np.interp`` by any
factor); the others are tested against onnxruntime's ``Resize`` (tests/test_interpolation.py, tests/test_onnx.py)."""


@pytest.mark.parametrize(("spec", "size"), DEFAULT_RESIZES, ids=case_id)
def test_reference_forward_matches_independent_numpy(spec: Spec, size: tuple[int, int]) -> None:
    check_reference_forward(spec, size, seed=0)


@settings(max_examples=60, deadline=None)
@given(random_cases())
def test_reference_forward_random_cases(case: tuple[Spec, tuple[int, int], int]) -> None:
    check_reference_forward(*case)


def check_reference_forward(spec: Spec, size: tuple[int, int], seed: int) -> None:
    w = weights(spec, seed)
    x, _ = inputs(spec, size, seed=seed)
    np.testing.assert_allclose(upsample.reference.forward(spec, w, x), _independent(spec, w, x), rtol=1e-10, atol=1e-12)


def _inner(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


@pytest.mark.parametrize(("spec", "size"), CASES, ids=case_id)
def test_reference_vjp_is_the_adjoint(spec: Spec, size: tuple[int, int]) -> None:
    """The layer is affine in ``x`` and in each weight, so ``<vjp(g), d> = <f(p + d) - f(p), g>`` exactly."""
    w = weights(spec)
    x, grad_y = inputs(spec, size)
    grad_x, grad_w = upsample.reference.vjp(spec, w, x, grad_y)
    base = upsample.reference.forward(spec, w, x)
    rng = np.random.default_rng(5)
    dx = rng.normal(size=x.shape)
    moved = upsample.reference.forward(spec, w, x + dx)
    assert _inner(grad_x, dx) == pytest.approx(_inner(moved - base, grad_y), rel=1e-9, abs=1e-9)
    for name in ("kernel", "bias", "skip"):
        value = getattr(w, name)
        if value is None:
            assert getattr(grad_w, name) is None
            continue
        delta = rng.normal(size=value.shape)
        changed = upsample.Weights(**{**{n: getattr(w, n) for n in ("kernel", "bias", "skip")}, name: value + delta})
        moved = upsample.reference.forward(spec, changed, x)
        assert _inner(getattr(grad_w, name), delta) == pytest.approx(_inner(moved - base, grad_y), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("spec", [s for s in SWEEP if isinstance(s, SubpixelSpec)], ids=case_id)
def test_icnr_starts_as_nearest_upsampling_of_a_convolution(spec: SubpixelSpec) -> None:
    w = upsample.init_weights(spec, seed=3, scheme="icnr")
    rh, rw = spec.scale
    x, _ = inputs(spec, (3, 4))
    x = x.astype(np.float64)
    small = SubpixelSpec(spec.in_channels, spec.out_channels, scale=1, kernel_size=spec.kernel_size, use_bias=False)
    conv = upsample.reference.forward(small, upsample.Weights(w.kernel[..., :: rh * rw]), x)
    skip = 0.0 if spec.residual is None else (x if w.skip is None else x @ w.skip.astype(np.float64))
    expected = np.repeat(np.repeat(conv + skip, rh, axis=1), rw, axis=2)
    np.testing.assert_allclose(upsample.reference.forward(spec, w, x), expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(w.kernel[..., 0], 0)


def test_icnr_and_bilinear_schemes_name_the_kind_they_need() -> None:
    with pytest.raises(ValueError, match="scheme='icnr' needs a SubpixelSpec, got a ResizeSpec"):
        upsample.init_weights(ResizeSpec(2), scheme="icnr")
    with pytest.raises(ValueError, match="scheme='bilinear' needs an UpsampleSpec"):
        upsample.init_weights(SubpixelSpec(2), scheme="bilinear")


def test_conv_kernel_fans_count_input_channels() -> None:
    # he_uniform limit sqrt(6 / fan_in) with fan_in = kh * kw * C_in for a convolution (torch/Keras Conv2D)
    spec = SubpixelSpec(5, 1, scale=4, kernel_size=(2, 3))
    kernel = upsample.init_weights(spec, seed=0).kernel
    limit = np.sqrt(6.0 / (2 * 3 * 5))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit


def test_weights_of_the_wrong_shape_are_refused() -> None:
    spec = SubpixelSpec(2, 3, scale=2, kernel_size=3)
    assert spec.weight_shapes() == {"kernel": (3, 3, 2, 12), "bias": (12,), "skip": None}
    wrong = upsample.Weights(np.zeros((3, 3, 2, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(
        ValueError, match=r"weights.kernel has shape \(3, 3, 2, 3\); the spec needs shape \(3, 3, 2, 12\)"
    ):
        upsample.reference.forward(spec, wrong, np.zeros((1, 2, 2, 2)))
