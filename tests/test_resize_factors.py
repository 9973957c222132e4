"""A resize by any factor or to any size (issue 25): the spec's arguments, output sizes and JSON, and ONNX ``Resize``
nodes with constant ``scales`` or ``sizes`` read back and run by onnxruntime against the reference. The builds run
the same specs in ``kind_cases.SWEEP`` and ``head_cases``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import upsample
from upsample import ResizeSpec

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from upsample.onnx import describe, to_onnx  # noqa: E402  # after the skips: onnx is optional


@pytest.mark.parametrize(
    ("arguments", "error", "pattern"),
    [
        ({"scale": 0}, ValueError, r"scale must be a positive finite number, got 0"),
        ({"scale": (1.5, float("nan"))}, ValueError, r"scale\[1\] must be a positive finite number, got nan"),
        ({"scale": True}, TypeError, r"scale must be an int or a float, got True"),
        ({"scale": "2"}, TypeError, r"scale must be an int or a float, got '2' \(str\)"),
        ({"scale": (2, 2.5, 2), "spatial_dims": 2}, ValueError, r"scale has 3 items but spatial_dims=2"),
        ({"size": (4, 5), "kernel_size": (3,)}, ValueError, r"size has 2 items and kernel_size has 1"),
        ({"scale": 2, "size": 5}, ValueError, r"give scale or size, not both; got scale=2 and size=5"),
        ({"size": 0}, ValueError, r"size must be positive, got 0"),
        (
            {"scale": 1.5, "residual": "nearest"},
            ValueError,
            r"residual='nearest' needs an integer scale .* scale=\(1.5",
        ),
        ({"size": 7, "residual": "projection"}, ValueError, r"residual='projection' needs an integer scale.*size=\(7"),
    ],
)
def test_bad_factors_are_named(arguments: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        ResizeSpec(2, **arguments)


def test_output_sizes_follow_onnx() -> None:
    """``floor(input * scale)`` with the product in float64 (onnx.reference's Resize: ``10 * 2.3`` is 23 though
    the float 2.3 is below 2.3); a size whatever the input; a whole float is the int; no output pixel is an error."""
    assert ResizeSpec(2, scale=(1.5, 2.3)).output_size((3, 10)) == (4, 23)
    assert ResizeSpec(2, scale=2.0).scale == (2, 2) and isinstance(ResizeSpec(2, scale=2.0).scale[0], int)
    assert ResizeSpec(2, scale=2.0).integer_scale == (2, 2) and ResizeSpec(2, scale=1.5).integer_scale is None
    assert ResizeSpec(2, size=(7, 5)).output_size((3, 4)) == ResizeSpec(2, size=(7, 5)).output_size((30, 1)) == (7, 5)
    assert ResizeSpec(2, size=(9,)).spatial_dims == 1 and ResizeSpec(2, size=9, spatial_dims=3).size == (9, 9, 9)
    for length in range(2, 40):
        for factor in (0.5, 1.1, 1.5, 2.3, 3.7):
            assert ResizeSpec(1, scale=factor, spatial_dims=1).output_size(length) == (math.floor(length * factor),)
    with pytest.raises(ValueError, match=r"scale=\(0.4, 0.4\) resizes an input of 2x3 to 0x1: every axis needs"):
        ResizeSpec(2, scale=0.4).output_size((2, 3))


def test_json_writes_a_size_and_reads_older_files() -> None:
    by_size = ResizeSpec(3, 2, size=(7, 5), method="cubic")
    data = by_size.to_dict()
    assert data["scale"] is None and data["size"] == [7, 5]
    assert upsample.load_spec(by_size.to_json()) == by_size
    by_factor = ResizeSpec(3, scale=(1.5, 2))
    assert by_factor.to_dict()["scale"] == [1.5, 2] and "size" not in by_factor.to_dict()
    assert upsample.load_spec(by_factor.to_json()) == by_factor
    assert "size" not in ResizeSpec(3).to_dict() and ResizeSpec(3).to_dict()["scale"] == [2, 2]


def test_coverage_and_table_name_the_size() -> None:
    spec = ResizeSpec(2, size=(7, 5), kernel_size=3)
    assert spec.coverage((3, 4)).shape == (7, 5) and spec.diagnose((3, 4)).ok
    assert spec.diagnose((7, 5)).not_upsampling
    head = upsample.HeadSpec([ResizeSpec(2, 2, scale=1.5), spec], input_size=(2, 2))
    assert head.stage_sizes() == ((2, 2), (3, 3), (7, 5)) and "to 7x5" in head.table()


def _resize_conv_model(resize_inputs: list[str], constants: dict[str, np.ndarray], modes: dict) -> bytes:
    """``x (1, 2, 3, 4)`` -> ``Resize(x, *resize_inputs)`` -> a 3x3 ``Conv`` 2 -> 3 channels, with bias."""
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(3, 2, 3, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    initializers = [onnx.numpy_helper.from_array(v, k) for k, v in {**arrays, **constants}.items()]
    nodes = [
        onnx.helper.make_node("Resize", ["x", *resize_inputs], ["r"], name="up", **modes),
        onnx.helper.make_node("Conv", ["r", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializers,
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize(
    ("resize_inputs", "constants", "modes", "want"),
    [
        (
            ["", "scales"],
            {"scales": np.array([1, 1, 1.5, 2.75], np.float32)},
            {"mode": "linear"},
            ResizeSpec(2, 3, scale=(1.5, 2.75), method="linear"),
        ),
        (
            ["", "", "sizes"],
            {"sizes": np.array([1, 2, 7, 5], np.int64)},
            {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
            ResizeSpec(2, 3, size=(7, 5), method="cubic", coordinates="align_corners"),
        ),
        (
            ["", "", "sizes"],
            {"sizes": np.array([1, 2, 5, 3], np.int64)},
            {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"},
            ResizeSpec(2, 3, size=(5, 3), method="nearest", coordinates="asymmetric", nearest_mode="ceil"),
        ),
    ],
    ids=["scales", "sizes", "sizes-shrinking"],
)
def test_onnx_resize_by_scales_or_sizes_is_read_and_computed(resize_inputs, constants, modes, want) -> None:  # type: ignore[no-untyped-def]
    model = _resize_conv_model(resize_inputs, constants, modes)
    (layer,) = describe(model)
    assert layer.spec == want, layer.problem
    x = np.random.default_rng(1).normal(size=(1, 2, 3, 4)).astype(np.float32)
    got = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    w = onnx.load_from_string(model).graph.initializer
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in w}
    weights = upsample.Weights(arrays["w"].transpose(2, 3, 1, 0), arrays["b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)  # the shrinking one
        ref = upsample.reference.forward(want, weights, x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_onnx_export_refuses_a_factor_float32_does_not_hold() -> None:
    spec = ResizeSpec(2, scale=(1.1, 1.5))
    with pytest.raises(ValueError, match=r"scales are float32, and scale=\(1.1, 1.5\) is not: 1.1 would become 1.10"):
        to_onnx(spec, upsample.init_weights(spec))
