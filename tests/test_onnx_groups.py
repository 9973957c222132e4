"""ONNX with groups and dilation: exported grouped, dilated layers of every kind in onnxruntime against the
NumPy reference (fixed and dynamic sizes); hand-written ``ConvTranspose`` nodes with ``group`` and
``dilations`` under every attribute form at 1 to 3 spatial axes, read by ``from_onnx`` and run by the
reference against onnxruntime; the round trip; ``describe`` of grouped, dilated ``Conv`` patterns; and the
errors a malformed group or dilation gets.
"""

from __future__ import annotations

import itertools
from typing import Any

import group_cases
import numpy as np
import pytest
from cases import required_backends

import upsample
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec, backends, geometry, reference

_missing = backends.missing_packages(("onnx", "onnxruntime"))
if _missing:
    _message = f'{", ".join(_missing)} not installed: pip install "upsample[onnx]"'
    if "onnx" in required_backends():
        pytest.fail(_message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)", pytrace=False)
    pytest.skip(_message, allow_module_level=True)

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from upsample.onnx import describe, from_onnx, to_onnx  # noqa: E402
from upsample.onnx.export import dynamic_blocker  # noqa: E402

ort.set_default_logger_severity(4)  # refused nodes are expected below; keep their log lines out of the output
RTOL, ATOL = 1e-4, 1e-5


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto | ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """The model in onnxruntime on channels-last ``x``, returned channels-last."""
    runner = session(model) if isinstance(model, onnx.ModelProto) else model
    (y,) = runner.run(None, {runner.get_inputs()[0].name: np.ascontiguousarray(np.moveaxis(x, -1, 1))})
    return np.moveaxis(y, 1, -1)


def random_weights(spec: Any, seed: int) -> upsample.Weights:
    """Normal weights of ``spec.weight_shapes()`` (not an init: every group's block differs)."""
    rng = np.random.default_rng(seed)
    arrays = [None if shape is None else rng.normal(size=shape) for shape in spec.weight_shapes().values()]
    return upsample.Weights(*arrays).astype(np.float32)


def random_input(spec: Any, size: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 100).normal(size=(2, *size, spec.in_channels)).astype(np.float32)


def conv_attributes(model: onnx.ModelProto) -> dict[str, Any]:
    """The attributes of the model's ``ConvTranspose`` or main ``Conv`` (a projection skip has no ``kernel_shape``)."""
    found = [
        {a.name: helper.get_attribute_value(a) for a in n.attribute}
        for n in model.graph.node
        if n.op_type in ("ConvTranspose", "Conv")
    ]
    (attributes,) = [a for a in found if "kernel_shape" in a]
    return attributes


# --- export: every grouped and dilated spec, fixed and dynamic sizes ----------------------------------------


@pytest.mark.parametrize("spec", group_cases.SPECS, ids=group_cases.IDS)
def test_exported_model_matches_reference(spec: Any) -> None:
    weights = random_weights(spec, 1)
    sizes = group_cases.SIZES[spec.spatial_dims]
    for seed, size in enumerate(sizes):
        model = to_onnx(spec, weights, input_size=size, dynamic_spatial=False)
        x = random_input(spec, size, seed)
        got, expected = run(model, x), reference.forward(spec, weights, x)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"fixed {size}: {spec.to_json()}")
    attributes = conv_attributes(model)
    assert attributes.get("group", 1) == spec.groups
    assert attributes.get("dilations", [1] * spec.spatial_dims) == list(spec.dilation)
    expected_names = {"kernel_shape", "pads"} | ({"strides"} if spec.KIND == "transposed" else set())
    expected_names |= {"group"} if spec.groups != 1 else set()
    expected_names |= {"dilations"} if set(spec.dilation) != {1} else set()
    assert set(attributes) == expected_names  # the default ones are not written: ungrouped graphs as before
    assert min(attributes["pads"]) >= 0
    if dynamic_blocker(spec) is not None:
        return
    dynamic = session(to_onnx(spec, weights, dynamic_spatial=True))
    for seed, size in enumerate(sizes):
        x = random_input(spec, size, seed)
        got, expected = run(dynamic, x), reference.forward(spec, weights, x)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"dynamic {size}: {spec.to_json()}")


# --- import: hand-written ConvTranspose nodes with group and dilations --------------------------------------

GEOMETRIES = [  # (C_in, C_out, group, kernel, stride, dilation, input sizes)
    (4, 6, 2, (3,), (2,), (2,), [(1,), (5,)]),
    (4, 4, 4, (3, 2), (2, 3), (3, 2), [(1, 1), (3, 2)]),
    (6, 4, 2, (2, 3, 2), (3, 2, 1), (2, 1, 3), [(1, 1, 1), (2, 2, 3)]),
    (2, 2, 1, (4,), (3,), (2,), [(2,)]),  # ungrouped but dilated
    (6, 3, 3, (2, 2), (4, 2), (1, 1), [(2, 3)]),  # grouped, undilated
]


def conv_transpose_model(kernel: np.ndarray, bias: np.ndarray | None, size: tuple[int, ...], **attributes: Any):
    """One ``ConvTranspose`` node named ``up`` with a constant weight ``(C_in, C_out // group, *k)``."""
    inputs, initializers = ["x", "W"], [numpy_helper.from_array(kernel, "W")]
    if bias is not None:
        inputs.append("B")
        initializers.append(numpy_helper.from_array(bias, "B"))
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", inputs, ["y"], name="up", **attributes)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, kernel.shape[0], *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def attribute_forms(stride: tuple[int, ...], extent: tuple[int, ...], size: tuple[int, ...]) -> list[dict[str, Any]]:
    """Explicit pads with output_padding, every auto_pad, output_shape (longer and shorter than the full output),
    and two forms onnxruntime refuses (output_padding at the stride; pads with auto_pad)."""
    rank, zeros = len(stride), [0] * len(stride)
    largest = [s - 1 for s in stride]
    forms: list[dict[str, Any]] = []
    for pads in (zeros + zeros, [1, *zeros[1:], *zeros[1:], 2], [a % 3 for a in range(2 * rank)]):
        for op in (zeros, largest):
            forms.append({"pads": pads, "output_padding": op})
    for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        for op in (zeros, largest):
            forms.append({"auto_pad": auto_pad, "output_padding": op})
    full = [geometry.full_length(size[a], extent[a], stride[a]) for a in range(rank)]
    for auto_pad in ("NOTSET", "SAME_UPPER", "SAME_LOWER"):
        for op in (zeros, largest):
            for delta in (1 - max(stride), 0, 1, 3):
                shape = [max(1, full[a] - min(delta + a, full[a] - 1)) for a in range(rank)]
                if any(shape[a] > full[a] + stride[a] - 1 for a in range(rank)):
                    continue  # longer than onnxruntime accepts
                forms.append({"auto_pad": auto_pad, "output_padding": op, "output_shape": shape})
    forms.append({"pads": zeros + zeros, "output_padding": list(stride)})  # refused
    forms.append({"auto_pad": "SAME_UPPER", "pads": [1, *zeros[1:], *zeros]})  # refused
    return forms


@pytest.mark.parametrize("geometry_case", GEOMETRIES, ids=[f"{len(g[3])}d-g{g[2]}-d{g[5]}" for g in GEOMETRIES])
def test_from_onnx_reproduces_onnxruntime(geometry_case: tuple[Any, ...]) -> None:
    c_in, c_out, group, kernel_size, stride, dilation, sizes = geometry_case
    rng = np.random.default_rng(sum(kernel_size) * 10 + group)
    extent = tuple(geometry.extent(k, d) for k, d in zip(kernel_size, dilation, strict=True))
    checked = refused = 0
    for size, use_bias in itertools.product(sizes, (True, False)):
        kernel = rng.normal(size=(c_in, c_out // group, *kernel_size)).astype(np.float32)
        bias = rng.normal(size=c_out).astype(np.float32) if use_bias else None
        x = rng.normal(size=(2, *size, c_in)).astype(np.float32)
        for form in attribute_forms(stride, extent, size):
            attributes = {"kernel_shape": list(kernel_size), "strides": list(stride), **form}
            attributes |= {"group": group} if group != 1 else {}
            attributes |= {"dilations": list(dilation)} if set(dilation) != {1} else {}
            model = conv_transpose_model(kernel, bias, size, **attributes)
            try:
                expected = run(model, x)
            except Exception:  # onnxruntime refuses the node: so must from_onnx
                with pytest.raises(ValueError, match="ConvTranspose node 'up': "):
                    from_onnx(model)
                refused += 1
                continue
            spec, weights = from_onnx(model)
            assert (spec.groups, spec.dilation, spec.out_channels) == (group, dilation, c_out)
            got = reference.forward(spec, weights, x)
            np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"{attributes} on {size}")
            checked += 1
    assert checked >= 25 * len(sizes) and refused >= 2 * len(sizes)  # the loop did compare, and did refuse


def test_same_forms_need_no_input_size_and_count_the_extent() -> None:
    """``SAME_UPPER``/``SAME_LOWER`` on a dynamic input: output ``i * s``, total padding ``extent - s``."""
    kernel = np.ones((2, 1, 3), np.float32)  # k 3, dilation 3: extent 7
    for auto_pad, crops in (("SAME_UPPER", ((2, 3),)), ("SAME_LOWER", ((3, 2),))):
        model = conv_transpose_model(kernel, None, ("w",), strides=[2], group=2, dilations=[3], auto_pad=auto_pad)
        spec, _ = from_onnx(model)
        assert spec == UpsampleSpec(
            2, 2, kernel_size=(3,), stride=2, padding=crops, groups=2, dilation=3, use_bias=False
        )
        assert spec.output_size(5) == (10,)


# --- round trip and describe ----------------------------------------------------------------------------


ROUND_TRIP = [
    spec
    for spec in [*group_cases.SWEEP, *group_cases.FIELD]
    if spec.residual is None
    and min(c for crop in spec.crops for c in crop) >= 0
    and (spec.groups > 1 or set(spec.dilation) != {1})
]
"""The grouped or dilated transposed specs whose crops are all ``ConvTranspose`` pads (no rows added, no residual)."""


@pytest.mark.parametrize("spec", ROUND_TRIP, ids=[group_cases.spec_id(s) for s in ROUND_TRIP])
def test_from_onnx_of_an_export_gives_the_spec_back(spec: UpsampleSpec) -> None:
    weights = random_weights(spec, 2)
    for dynamic in (False, True):
        size = group_cases.SIZES[spec.spatial_dims][-1]
        model = to_onnx(spec, weights, input_size=size, dynamic_spatial=dynamic)
        got_spec, got_weights = from_onnx(model.SerializeToString())
        assert got_spec == spec, (got_spec, spec)
        assert got_weights.allclose(weights)


def _conv_kind_cases() -> list[Any]:
    """The conv kinds ``describe`` recognises when exported: 2-D sub-pixel with a square scale (``DepthToSpace``),
    and resize-convolutions at any rank."""
    return [s for s in group_cases.CONV if s.KIND == "resize" or (s.spatial_dims == 2 and len(set(s.scale)) == 1)]


@pytest.mark.parametrize("spec", _conv_kind_cases(), ids=group_cases.spec_id)
def test_describe_reads_grouped_dilated_conv_patterns(spec: Any) -> None:
    size = group_cases.SIZES[spec.spatial_dims][-1]
    layers = [
        layer
        for layer in describe(to_onnx(spec, random_weights(spec, 3), input_size=size, dynamic_spatial=False))
        if layer.spec
    ]
    assert [layer.kind for layer in layers] == [spec.KIND], layers
    found = layers[0].spec
    assert found == type(spec).from_dict({**spec.to_dict(), "residual": None}), (found, spec)
    assert layers[0].input_size == size and layers[0].problem is None


def shuffle_model(conv: dict[str, Any], mode: str, channels: tuple[int, int] = (4, 8)) -> onnx.ModelProto:
    """``x (1, C_in, 5, 5)`` -> ``Conv`` to ``C_conv`` channels, 3x3, ``conv`` attributes -> ``DepthToSpace`` 2."""
    c_in, c_conv = channels
    weight = np.ones((c_conv, c_in // conv.get("group", 1), 3, 3), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **conv),
        helper.make_node("DepthToSpace", ["c"], ["y"], name="d2s", blocksize=2, mode=mode),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_describe_conv_patterns_with_group_and_dilations() -> None:
    """Every "same" form of the dilated extent is read; other pads, a grouped DCR shuffle and a group the spec
    refuses say why."""
    dilated = {"group": 2, "dilations": [2, 3]}  # extent 5 x 7: same pads (2, 3) before, (2, 3) after
    for padded in ({"pads": [2, 3, 2, 3]}, {"auto_pad": "SAME_UPPER"}, {"auto_pad": "SAME_LOWER"}):
        (layer,) = describe(shuffle_model({**dilated, **padded}, "CRD"))
        assert layer.spec == SubpixelSpec(4, 2, scale=2, groups=2, dilation=(2, 3), use_bias=False), layer
    (undilated,) = describe(shuffle_model({"group": 4, "pads": [1, 1, 1, 1]}, "CRD", (4, 16)))
    assert undilated.spec == SubpixelSpec(4, 4, scale=2, groups=4, use_bias=False)
    (old_pads,) = describe(shuffle_model({**dilated, "pads": [1, 1, 1, 1]}, "CRD"))
    assert old_pads.spec is None and "dilations=[2, 3], pads=[1, 1, 1, 1]" in (old_pads.problem or "")
    assert "dilated extent" in (old_pads.problem or "")
    (dcr,) = describe(shuffle_model({**dilated, "pads": [2, 3, 2, 3]}, "DCR"))
    assert dcr.spec is None and "group=2 before DepthToSpace 'd2s' mode DCR" in (dcr.problem or "")
    (ungrouped_dcr,) = describe(shuffle_model({"dilations": [2, 3], "pads": [2, 3, 2, 3]}, "DCR"))
    assert ungrouped_dcr.spec == SubpixelSpec(4, 2, scale=2, dilation=(2, 3), use_bias=False)
    (mixed,) = describe(shuffle_model({"group": 4, "pads": [1, 1, 1, 1]}, "CRD", (4, 8)))  # 8 / 4 = 2 outputs
    assert mixed.spec is None and "groups must divide in_channels and out_channels, got groups=4" in (
        mixed.problem or ""
    )


def test_describe_resize_conv_with_group_and_dilations() -> None:
    spec = ResizeSpec(6, 4, scale=(2, 3), method="nearest", kernel_size=(3, 2), groups=2, dilation=(3, 1))
    (layer,) = describe(to_onnx(spec, random_weights(spec, 4), input_size=(2, 3), dynamic_spatial=False))
    assert layer.spec == spec and layer.input_size == (2, 3)


# --- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"group": 3}, r"ConvTranspose node 'up': groups must divide in_channels and out_channels, got groups=3"),
        ({"group": 0}, r"ConvTranspose node 'up': group must be a positive int, got 0"),
        ({"dilations": [0, 1]}, r"ConvTranspose node 'up': dilations must be 2 positive ints, got \[0, 1\]"),
        ({"dilations": [2]}, r"ConvTranspose node 'up': dilations must be 2 positive ints, got \[2\]"),
    ],
)
def test_from_onnx_refuses_a_malformed_group_or_dilation(attributes: dict[str, Any], message: str) -> None:
    model = conv_transpose_model(np.ones((4, 2, 3, 3), np.float32), None, (2, 2), strides=[2, 2], **attributes)
    with pytest.raises(Exception):  # noqa: B017  onnxruntime refuses it too
        session(model)
    with pytest.raises(ValueError, match=message):
        from_onnx(model)


def test_output_shape_of_a_dilated_node_is_read_with_its_extent() -> None:
    """``output_shape`` up to ``s - 1`` past the full output ``(i - 1) * s + extent`` is accepted, longer refused."""
    kernel = np.ones((2, 2, 3), np.float32)  # extent 5 at dilation 2; input 3, stride 2: full output 9
    for shape, crops in ((10, ((0, -1),)), (9, ((0, 0),)), (6, ((2, 1),))):
        model = conv_transpose_model(kernel, None, (3,), strides=[2], dilations=[2], output_shape=[shape])
        spec, weights = from_onnx(model)
        assert spec.crops == crops and spec.output_size(3) == (shape,)
        x = random_input(spec, (3,), shape)
        np.testing.assert_allclose(reference.forward(spec, weights, x), run(model, x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"output_shape 11 does not fit .*kernel extent 5, stride 2: at most 10"):
        from_onnx(conv_transpose_model(kernel, None, (3,), strides=[2], dilations=[2], output_shape=[11]))
