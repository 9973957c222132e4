"""The resize definition (upsample.interpolation, issue 25) against onnxruntime running the same ``Resize`` node, for
every method, coordinate convention, nearest mode and cubic setting, on every small length (1-pixel inputs and
outputs included, enlarging and shrinking), given as sizes and as scales; and its normal form for integer factors."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

import upsample
from upsample.interpolation import COORDINATES, METHODS, NEAREST_MODES, REPEAT, Interpolation, output_length

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

CUBIC = [(-0.75, False), (-0.5, False), (-0.75, True), (-0.5, True)]
SETTINGS = [
    Interpolation(method, coordinates, mode, a, exclude)
    for method in METHODS
    for coordinates in COORDINATES
    for mode in (NEAREST_MODES if method == "nearest" else ("round_prefer_ceil",))
    for a, exclude in (CUBIC if method == "cubic" else [(-0.75, False)])
]
LENGTHS = range(1, 7)
OUTPUTS = range(1, 14)
SCALES = (2.0, 3.0, 1.5, 2.5, 0.5, 0.75, 1.25)
"""Scales a float32 holds exactly, so onnxruntime's float32 coordinates are the exact ones (a scale such as 1.7 or
1/3 is not: there onnxruntime rounds a tie in ``nearest`` by its float32 error; measured 8 of 4392 cases). Where a
scale leaves the length unchanged (2 x 1.25 -> 2) onnxruntime 1.32 copies the input instead of resampling it."""


def _session(setting: Interpolation, by: str) -> ort.InferenceSession:
    """One ``Resize`` (opset 19) on a ``(1, 1, 1, n)`` input whose ``sizes`` or ``scales`` are inputs, so that one
    session serves every length (onnxruntime's cubic takes 2-D or 4-D tensors only)."""
    attributes = {
        "mode": setting.method,
        "coordinate_transformation_mode": setting.coordinates,
        "nearest_mode": setting.nearest_mode,
        "cubic_coeff_a": setting.cubic_a,
        "exclude_outside": int(setting.exclude_outside),
    }
    kind = TensorProto.INT64 if by == "sizes" else TensorProto.FLOAT
    inputs = ["X", "", "", "T"] if by == "sizes" else ["X", "", "T"]
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["Y"], **attributes)],
        "resize",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 1, None]),
            helper.make_tensor_value_info("T", kind, [4]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _ours(setting: Interpolation, x: np.ndarray, out: int, scale: float | None) -> np.ndarray:
    return np.array(
        [sum(w * x[p] for p, w in zip(*taps, strict=True)) for taps in setting.axis_taps(len(x), out, scale)]
    )


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_every_setting_is_onnxruntimes_resize(setting: Interpolation) -> None:
    rng = np.random.default_rng(0)
    by_sizes, by_scales = _session(setting, "sizes"), _session(setting, "scales")
    for length in LENGTHS:
        x = rng.uniform(-1, 1, length).astype(np.float32)
        feed = x.reshape(1, 1, 1, length)
        for out in OUTPUTS:
            got = by_sizes.run(None, {"X": feed, "T": np.array([1, 1, 1, out], np.int64)})[0].ravel()
            np.testing.assert_allclose(
                got, _ours(setting, x, out, None), rtol=1e-5, atol=1e-6, err_msg=f"{length}->{out}"
            )
        for scale in SCALES:
            out = output_length(length, scale)
            if out < 1:
                continue
            got = by_scales.run(None, {"X": feed, "T": np.array([1, 1, 1, scale], np.float32)})[0].ravel()
            if out == length:  # onnxruntime copies the input when the size does not change, whatever the scale says
                np.testing.assert_array_equal(got, x)
                continue
            np.testing.assert_allclose(
                got, _ours(setting, x, out, scale), rtol=1e-5, atol=1e-6, err_msg=f"{length}x{scale}"
            )


@pytest.mark.parametrize(("length", "scale"), list(itertools.product(range(1, 6), range(1, 5))))
def test_half_pixel_linear_is_numpys_interp(length: int, scale: int) -> None:
    """An independent formulation: half-pixel source coordinates, ``np.interp`` clamping at the edges."""
    values = np.random.default_rng(length * 10 + scale).normal(size=length)
    source = (np.arange(length * scale) + 0.5) / scale - 0.5
    got = _ours(Interpolation("linear"), values, length * scale, scale)
    np.testing.assert_allclose(got, np.interp(source, np.arange(length), values), rtol=1e-12, atol=1e-12)


def test_integer_scale_normal_form_resizes_alike() -> None:
    """Settings with one normal form read the same pixels with the same weights for every length 1..8 and integer
    factor 2..6; the repeating class is exactly ``np.repeat``."""
    forms: dict[Interpolation, list[Interpolation]] = {}
    for setting in SETTINGS:
        forms.setdefault(setting.for_integer_scale(), []).append(setting)
    assert REPEAT in forms and len(forms[REPEAT]) == 5  # half-pixel (both kinds) rounded either way; asymmetric floor
    for form, members in forms.items():
        for length, factor in itertools.product(range(1, 9), range(2, 7)):
            want = form.axis_taps(length, length * factor, factor)
            assert all(m.axis_taps(length, length * factor, factor) == want for m in members), (form, length, factor)
    for length, factor in itertools.product(range(1, 9), range(2, 7)):
        taps = REPEAT.axis_taps(length, length * factor, factor)
        assert [sources for sources, _ in taps] == [(i,) for i in np.repeat(np.arange(length), factor)]


def test_nearest_ties_are_exact() -> None:
    """A tie is a tie: 3 -> 2 pixels puts output 0 at source 0.5 (half-pixel), rounded by the mode."""
    assert Interpolation("nearest", nearest_mode="round_prefer_floor").source(0, 3, 2, Fraction(2, 3)) == Fraction(1, 4)
    ties = {mode: Interpolation("nearest", "asymmetric", mode).axis_taps(1, 2, 2) for mode in NEAREST_MODES}
    assert ties["floor"] == ties["round_prefer_floor"] == (((0,), (1.0,)), ((0,), (1.0,)))
    assert Interpolation("nearest", "asymmetric", "round_prefer_ceil").axis_taps(2, 4, 2)[1] == ((1,), (1.0,))


@pytest.mark.parametrize(
    ("arguments", "error", "pattern"),
    [
        ({"method": "lanczos3"}, ValueError, r"method must be one of \('nearest', 'linear', 'cubic'\).*'lanczos3'"),
        ({"coordinates": "tf_crop_and_resize"}, ValueError, r"coordinates must be one of .*'tf_crop_and_resize'"),
        ({"nearest_mode": "round"}, ValueError, r"nearest_mode must be one of .*'round'"),
        ({"cubic_a": "a"}, TypeError, r"cubic_a must be a float, got 'a'"),
        ({"cubic_a": float("nan")}, ValueError, r"cubic_a must be in \[-1, 0\].*got nan"),
        ({"cubic_a": -3}, ValueError, r"cubic_a must be in \[-1, 0\].*got -3"),
        ({"exclude_outside": 1}, TypeError, r"exclude_outside must be a bool, got 1"),
    ],
)
def test_bad_settings_are_refused_by_name(arguments: dict[str, object], error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        upsample.ResizeSpec(2, **arguments)  # type: ignore[arg-type]


def test_spec_names_and_json() -> None:
    """``bilinear``/``trilinear``/``bicubic`` name ``linear``/``cubic``; JSON writes a setting only where it is not the
    default, so a file written before the settings existed reads back as the same spec."""
    assert upsample.ResizeSpec(2, method="bilinear") == upsample.ResizeSpec(2, method="linear")
    assert upsample.ResizeSpec(2, method="bicubic").method == "cubic"
    old = {"version": 1, "kind": "resize", "in_channels": 2, "out_channels": 2, "scale": [2, 2],
           "kernel_size": [3, 3], "method": "bilinear", "residual": None, "use_bias": True}  # fmt: skip
    assert upsample.load_spec(old) == upsample.ResizeSpec(2, method="linear")
    assert set(upsample.ResizeSpec(2).to_dict()) == set(old)
    spec = upsample.ResizeSpec(2, method="cubic", coordinates="align_corners", cubic_a=-0.5, exclude_outside=True)
    assert upsample.load_spec(spec.to_json()) == spec
    assert {"coordinates", "cubic_a", "exclude_outside"} <= set(spec.to_dict()) and "nearest_mode" not in spec.to_dict()


def test_a_cubic_resize_off_two_axes_has_no_onnx_export() -> None:
    """onnxruntime's ``Resize`` computes cubic on two axes only: a 1-D or 3-D cubic spec is refused by name."""
    from upsample.onnx import to_onnx

    for rank in (1, 3):
        spec = upsample.ResizeSpec(2, scale=2, method="cubic", spatial_dims=rank)
        with pytest.raises(ValueError, match=rf"a {rank}-D cubic resize has no ONNX export"):
            to_onnx(spec, upsample.init_weights(spec, seed=0))
