"""ONNX in and out (issue 18): exported models in onnxruntime (and the onnx reference runtime) against
the NumPy reference over the sweep and every spec kind; ``from_onnx`` against onnxruntime running the original
``ConvTranspose`` node, for every attribute form; the padding arithmetic exhaustively on small cases.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kind_cases
import numpy as np
import pytest
from cases import assert_close, random_input, random_weights, required_backends, sweep, sweep_ids

import upsample
from upsample import backends, geometry, reference
from upsample.onnx import padding

_missing = backends.missing_packages(("onnx", "onnxruntime"))
if _missing:
    _message = f'{", ".join(_missing)} not installed: pip install "upsample[onnx]"'
    if "onnx" in required_backends():
        pytest.fail(_message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)", pytrace=False)
    pytest.skip(_message, allow_module_level=True)

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from upsample.onnx import DEFAULT_OPSET, describe, export_file, from_onnx, to_onnx  # noqa: E402

ort.set_default_logger_severity(3)  # refused nodes are expected below; keep their log lines out of the output


def run_ort(model: onnx.ModelProto, x_nchw: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x_nchw})[0]


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(y: np.ndarray) -> np.ndarray:
    return y.transpose(0, 2, 3, 1)


# --- export: every spec of the sweep, two runtimes ---------------------------------------------


@pytest.mark.parametrize(("spec", "size"), sweep(), ids=sweep_ids())
def test_exported_model_matches_reference(spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    weights = random_weights(spec, 3)
    model = to_onnx(spec, weights, input_size=size)
    x = random_input(spec, 3, size, 3)
    expected = reference.forward(spec, weights, x)
    assert_close(nhwc(run_ort(model, nchw(x))), expected, "onnxruntime", spec)
    assert_close(nhwc(ReferenceEvaluator(model).run(None, {"x": nchw(x)})[0]), expected, "onnx reference", spec)
    for node in model.graph.node:  # only the attribute forms every runtime reads alike
        if node.op_type == "ConvTranspose":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            assert set(attributes) == {"kernel_shape", "strides", "pads"}, attributes
            assert min(attributes["pads"]) >= 0


@pytest.mark.parametrize(("spec", "size"), kind_cases.CASES, ids=kind_cases.case_id)
def test_exported_kinds_match_reference(spec: Any, size: tuple[int, int]) -> None:
    """Sub-pixel (``DepthToSpace`` CRD, or its reshapes for a non-square scale) and resize (``Resize``)."""
    weights = kind_cases.weights(spec, 1)
    model = to_onnx(spec, weights, input_size=size)
    x, _ = kind_cases.inputs(spec, size, batch=3)
    expected = reference.forward(spec, weights, x)
    assert_close(nhwc(run_ort(model, nchw(x))), expected, "onnxruntime", spec)
    if not _unfloored_corners(spec):
        assert_close(nhwc(ReferenceEvaluator(model).run(None, {"x": nchw(x)})[0]), expected, "onnx reference", spec)
    ops = {node.op_type for node in model.graph.node}
    if spec.KIND == "resize":
        assert "Resize" in ops
    else:
        assert ("DepthToSpace" in ops) == (spec.scale[0] == spec.scale[1])


def _unfloored_corners(spec: Any) -> bool:
    """Whether onnx's reference evaluator resizes ``spec`` otherwise than onnxruntime and torch: ``align_corners``
    by a non-integer factor, which it maps by ``(n_in - 1) / (n_in * scale - 1)``, the length before flooring
    (onnx 1.23 ``op_resize.py``; onnxruntime and torch use the output's ``n_out - 1``, as the spec does)."""
    return spec.KIND == "resize" and spec.coordinates == "align_corners" and spec.scale and not spec.integer_scale


def input_dims(model: onnx.ModelProto) -> list[list[Any]]:
    """Each graph input's and output's dims: ``dim_param`` (symbolic) or ``dim_value``."""
    return [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.input, *model.graph.output)
    ]


def test_fixed_size_model_has_dynamic_batch_and_refuses_other_sizes(tmp_path: Path) -> None:
    spec = upsample.UpsampleSpec(4, 4, kernel_size=3, stride=2, padding="same", residual="nearest")
    weights = random_weights(spec, 1)
    to_onnx(spec, weights, tmp_path / "m.onnx", input_size=(2, 3), dynamic_spatial=False)
    model = onnx.load(tmp_path / "m.onnx")
    assert input_dims(model) == [["batch", 4, 2, 3], ["batch", 4, 4, 6]]
    assert json.loads({p.key: p.value for p in model.metadata_props}["upsample.spec"]) == spec.to_dict()
    for batch in (1, 7):
        x = random_input(spec, batch, (2, 3), batch)
        assert_close(nhwc(run_ort(model, nchw(x))), reference.forward(spec, weights, x), f"batch {batch}", spec)
    with pytest.raises(Exception, match=r"(?s)Got invalid dimensions for input: x.*index: 2 Got: 3 Expected: 2"):
        run_ort(model, nchw(random_input(spec, 1, (3, 3), 0)))


def test_dynamic_spatial_is_refused_where_the_residual_depends_on_the_size(tmp_path: Path) -> None:
    """An output of ``2i + 1`` with a residual gathers indices that differ per size: fixed by default,
    refused on request, naming the reason."""
    spec = upsample.UpsampleSpec(2, kernel_size=3, stride=2, padding="valid", residual="nearest")
    weights = random_weights(spec, 5)
    with pytest.raises(
        ValueError,
        match=r"dynamic_spatial=True is impossible .*residual gathers size-dependent "
        r"indices.*input 4x4 -> output 9x9, 8x8 -> 17x17",
    ):
        to_onnx(spec, weights, dynamic_spatial=True)
    model = to_onnx(spec, weights, input_size=(3, 2))
    assert input_dims(model)[0] == ["batch", 2, 3, 2]
    x = random_input(spec, 2, (3, 2), 5)
    assert_close(nhwc(run_ort(model, nchw(x))), reference.forward(spec, weights, x), "fixed fallback", spec)
    head = upsample.HeadSpec([upsample.UpsampleSpec(2, 2, kernel_size=4, stride=2, padding=1), spec], input_size=2)
    with pytest.raises(ValueError, match=r"stages\[1\]'s residual gathers size-dependent indices"):
        to_onnx(head, upsample.init_weights(head), dynamic_spatial=True)
    with pytest.raises(ValueError, match="dynamic_spatial must be None, True or False, got 'yes'"):
        to_onnx(spec, weights, dynamic_spatial="yes")  # type: ignore[arg-type]


def test_cli_export_writes_a_dynamic_model_unless_fixed(tmp_path: Path) -> None:
    spec = upsample.SubpixelSpec(3, 2, scale=(2, 3), kernel_size=3, residual="projection")
    (tmp_path / "spec.json").write_text(spec.to_json())
    weights = upsample.init_weights(spec, seed=0)
    for flags, dims in [([], ["height", "width"]), (["--fixed-size", "--input-size", "2x3"], [2, 3])]:
        command = [sys.executable, "-m", "upsample.cli", "export", str(tmp_path / "spec.json"), "-o"]
        result = subprocess.run([*command, str(tmp_path / "m.onnx"), *flags], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert ("dynamic height and width" in result.stderr) == (not flags), result.stderr
        model = onnx.load(tmp_path / "m.onnx")
        assert input_dims(model)[0][2:] == dims
        x = random_input(spec, 2, (2, 3), 1)
        assert_close(nhwc(run_ort(model, nchw(x))), reference.forward(spec, weights, x), f"cli {flags}", spec)


@pytest.mark.parametrize("opset", [13, 21])
def test_other_opsets(opset: int) -> None:
    spec = upsample.UpsampleSpec(
        3, 2, kernel_size=(3, 2), stride=(2, 3), padding=((-1, 2), (0, -2)), residual="projection"
    )
    weights = random_weights(spec, opset)
    model = to_onnx(spec, weights, input_size=(3, 2), opset=opset)
    assert model.opset_import[0].version == opset
    x = random_input(spec, 2, (3, 2), opset)
    assert_close(nhwc(run_ort(model, nchw(x))), reference.forward(spec, weights, x), f"opset {opset}", spec)


@pytest.mark.parametrize(
    "spec",
    [upsample.UpsampleSpec.for_size(3, 6, out_channels=2, residual="projection"), upsample.ResizeSpec(3, 2, scale=2)],
    ids=["transposed", "resize"],
)
def test_export_file_from_weights_and_from_spec_json(spec: Any, tmp_path: Path) -> None:
    weights = random_weights(spec, 4)
    upsample.save_weights(tmp_path / "w.safetensors", spec, weights)
    (tmp_path / "spec.json").write_text(spec.to_json())
    x = random_input(spec, 2, (1, 1), 4)
    for source, expected_weights in [("w.safetensors", weights), ("spec.json", upsample.init_weights(spec, seed=7))]:
        got_spec, got_weights = export_file(tmp_path / source, tmp_path / "out.onnx", seed=7)
        assert got_spec == spec and got_weights.allclose(expected_weights)
        expected = reference.forward(spec, expected_weights, x)
        assert_close(nhwc(run_ort(onnx.load(tmp_path / "out.onnx"), nchw(x))), expected, source, spec)
    with pytest.raises(ValueError, match="cannot read spec file"):
        export_file(tmp_path / "missing.json", tmp_path / "out.onnx")


def test_to_onnx_refuses_bad_arguments() -> None:
    spec = upsample.UpsampleSpec(2, kernel_size=2, stride=2)
    weights = random_weights(spec, 0)
    with pytest.raises(TypeError, match="spec must be one of the kinds"):
        to_onnx("not a spec", weights)
    with pytest.raises(ValueError, match="opset must be an int >= 13, got 11"):
        to_onnx(spec, weights, opset=11)
    with pytest.raises(ValueError, match="weights.kernel has shape"):
        to_onnx(upsample.UpsampleSpec(3, kernel_size=2, stride=2), weights)
    with pytest.raises(ValueError, match="input_size"):
        to_onnx(spec, weights, input_size=0)


def test_import_upsample_onnx_loads_nothing() -> None:
    code = "import sys, upsample, upsample.onnx, upsample.onnx.padding; print('onnx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False"


# --- import: every ConvTranspose attribute form against onnxruntime ------------------------------


def conv_transpose_model(
    kernel: np.ndarray, bias: np.ndarray | None, size: tuple[int, int] | None, **attributes: Any
) -> onnx.ModelProto:
    """One ``ConvTranspose`` node with constant weights; ``size=None`` declares a dynamic input size."""
    inputs = ["x", "W"] + (["B"] if bias is not None else [])
    initializers = [numpy_helper.from_array(kernel, "W")] + (
        [numpy_helper.from_array(bias, "B")] if bias is not None else []
    )
    shape = [None, kernel.shape[0], *(size or ("h", "w"))]
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", inputs, ["y"], name="up", **attributes)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def attribute_forms(ks: tuple[int, int], ss: tuple[int, int], size: tuple[int, int]) -> list[dict[str, Any]]:
    """Every attribute form for one geometry, including ones onnxruntime refuses (``from_onnx`` must too)."""
    largest = [s - 1 for s in ss]
    forms: list[dict[str, Any]] = []
    for pads in ([0, 0, 0, 0], [1, 0, 0, 2], [0, 2, 1, 1], [-1, 0, 0, 0]):  # explicit, asymmetric, negative
        for op in ([0, 0], largest, [ss[0], 0]):  # output_padding, up to the stride (refused)
            forms.append({"pads": pads, "output_padding": op})
    for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        for op in ([0, 0], largest):
            forms.append({"auto_pad": auto_pad, "output_padding": op})
    forms.append({"auto_pad": "SAME_UPPER", "pads": [1, 0, 0, 0]})  # pads with auto_pad: refused
    full = [geometry.full_length(size[a], ks[a], ss[a]) for a in (0, 1)]
    for auto_pad in padding.AUTO_PADS:
        for op in ([0, 0], largest):
            for delta in (-ss[0], 1 - ss[0], 0, 1, 2, 3):  # output_shape: longer than the full output, to shorter
                shape = [max(1, full[0] - delta), max(1, full[1] - delta // 2)]
                forms.append({"auto_pad": auto_pad, "output_padding": op, "output_shape": shape, "pads": [0, 1, 2, 0]})
    for form in forms:
        if form.get("auto_pad", "NOTSET") != "NOTSET" and "output_shape" in form:
            del form["pads"]  # pads with output_shape are ignored under NOTSET only
    return forms


@pytest.mark.parametrize(("k", "s"), list(itertools.product(range(1, 6), range(1, 5))))
def test_from_onnx_reproduces_onnxruntime(k: int, s: int) -> None:
    ks, ss = (k, k % 5 + 1), (s, s % 4 + 1)  # the width axis gets other values: non-square kernels and strides
    rng = np.random.default_rng(k * 10 + s)
    checked = 0
    for size, use_bias in itertools.product([(1, 1), (3, 2)], [True, False]):
        kernel = rng.normal(size=(2, 3, *ks)).astype(np.float32)
        bias = rng.normal(size=3).astype(np.float32) if use_bias else None
        x = rng.normal(size=(2, 2, *size)).astype(np.float32)
        for form in attribute_forms(ks, ss, size):
            attributes = {"kernel_shape": list(ks), "strides": list(ss), **form}
            model = conv_transpose_model(kernel, bias, size, **attributes)
            try:
                expected = run_ort(model, x)
            except Exception as error:  # onnxruntime refuses the node: so must from_onnx
                with pytest.raises(ValueError, match="ConvTranspose node 'up': "):
                    from_onnx(model)
                assert "INVALID" in str(error) or "FAIL" in str(error), error
                continue
            spec, weights = from_onnx(model)
            got = reference.forward(spec, weights, x.transpose(0, 2, 3, 1))
            assert_close(got, nhwc(expected), f"{attributes} on {size}", spec)
            checked += 1
    assert checked >= 100  # most forms are valid: the loop did compare


def test_output_shape_needs_an_input_size() -> None:
    kernel = np.ones((1, 1, 3, 3), np.float32)
    model = conv_transpose_model(kernel, None, None, strides=[2, 2], output_shape=[6, 5])
    with pytest.raises(ValueError, match=r"output_shape=\[6, 5\].*pass input_size=\(H, W\)"):
        from_onnx(model)
    spec, _ = from_onnx(model, input_size=(3, 2))
    assert spec.output_size((3, 2)) == (6, 5)
    auto = conv_transpose_model(kernel, None, None, strides=[2, 2], auto_pad="SAME_LOWER")  # no size needed
    assert from_onnx(auto)[0].crops == ((1, 0), (1, 0))


def test_from_onnx_refuses_what_has_no_spec() -> None:
    kernel = np.ones((2, 2, 3, 3), np.float32)
    for attributes, message in [
        ({"dilations": [0, 1]}, "dilations must be 2 positive ints"),
        ({"group": 3}, "groups must divide"),
        ({"kernel_shape": [2, 3]}, r"kernel_shape \[2, 3\] does not match"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_onnx(conv_transpose_model(kernel, None, (2, 2), **attributes))
    with pytest.raises(ValueError, match="is 4-D .* a spec is 1-D, 2-D or 3-D"):
        from_onnx(conv_transpose_model(np.ones((1, 1, 3, 3, 3, 3), np.float32), None, None))
    dynamic = conv_transpose_model(kernel, None, (2, 2))
    dynamic.graph.initializer.pop()
    dynamic.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [2, 2, 3, 3]))
    with pytest.raises(ValueError, match="weight is not a constant"):
        from_onnx(dynamic)
    with pytest.raises(ValueError, match="no ConvTranspose node"):
        from_onnx(helper.make_model(helper.make_graph([], "empty", [], [])))
    with pytest.raises(TypeError, match="model_or_path must be"):
        from_onnx(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        from_onnx("missing.onnx")


def test_from_onnx_of_an_export_gives_the_spec_back(tmp_path: Path) -> None:
    spec = upsample.UpsampleSpec(3, 2, kernel_size=(4, 3), stride=(2, 3), padding=((1, 2), (0, 1)))
    weights = random_weights(spec, 2)
    to_onnx(spec, weights, tmp_path / "m.onnx", input_size=2)
    for source in (tmp_path / "m.onnx", str(tmp_path / "m.onnx"), (tmp_path / "m.onnx").read_bytes()):
        got_spec, got_weights = from_onnx(source)
        assert got_spec == spec and got_weights.allclose(weights)


def test_constant_node_weights_and_describe() -> None:
    """Weights held by ``Constant`` nodes; two nodes, one refused: describe lists both, by name or position.
    The first is the Keras "same" trap written with ``output_shape`` (``SAME_UPPER`` would give 3x3 here)."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    constant = helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(kernel))
    first = helper.make_node("ConvTranspose", ["x", "W"], ["h"], strides=[16, 16], output_shape=[16, 16])
    second = helper.make_node("ConvTranspose", ["h", "W"], ["y"], name="grouped", group=3)  # 3 does not divide 2
    graph = helper.make_graph(
        [constant, first, second],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    layers = describe(model)
    assert [(layer.name, layer.input_size) for layer in layers] == [("#0", (1, 1)), ("grouped", (16, 16))]
    assert layers[0].spec == upsample.UpsampleSpec(2, kernel_size=3, stride=16, padding="same", use_bias=False)
    assert layers[0].spec.diagnose(1).dead == 256 - 9  # the Keras "same" trap, found in an ONNX model
    assert layers[1].spec is None and "groups must divide" in (layers[1].problem or "")
    with pytest.raises(ValueError, match=r"2 ConvTranspose nodes \['#0', 'grouped'\]; pick one with node="):
        from_onnx(model)
    assert from_onnx(model, node=0)[0] == from_onnx(model, node="#0")[0] == layers[0].spec
    with pytest.raises(ValueError, match="node must be the name or index"):
        from_onnx(model, node="nope")


# --- the padding arithmetic, exhaustively on small cases -----------------------------------------

SMALL = list(itertools.product(range(1, 7), range(1, 5), range(1, 5)))  # (k, s, i)


@pytest.mark.parametrize(("k", "s", "i"), SMALL)
def test_crop_from_onnx_follows_the_operator_text_where_the_runtime_does(k: int, s: int, i: int) -> None:
    full = geometry.full_length(i, k, s)
    for op in range(s):
        for pads in itertools.product(range(3), repeat=2):  # text: output = full + op - pads[begin] - pads[end]
            crop = padding.crop_from_onnx(i, k, s, pads=pads, output_padding=op)
            assert crop == (pads[0], pads[1] - op)
        assert padding.crop_from_onnx(i, k, s, output_padding=op, auto_pad="VALID") == (0, -op)
        for out in range(1, full + op + 1):  # text: total = full + op - output_shape >= 0
            total = full + op - out
            for auto_pad in padding.AUTO_PADS:
                crop = padding.crop_from_onnx(i, k, s, output_padding=op, auto_pad=auto_pad, output_shape=out)
                begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
                assert crop == (begin, total - begin - op) and geometry.output_length(i, k, s, crop) == out
        for auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            crop = padding.crop_from_onnx(i, k, s, output_padding=op, auto_pad=auto_pad)
            # text: output i * s; onnxruntime clamps a negative total padding (k + op < s) to 0 instead
            expected = i * s if k + op >= s else full + op
            assert geometry.output_length(i, k, s, crop) == expected
            if k + op >= s and (k + op - s) % 2:  # the odd pixel: cropped at the end (UPPER) or start (LOWER)
                assert (crop[1] + op > crop[0]) == (auto_pad == "SAME_UPPER")


@pytest.mark.parametrize(("k", "s"), list(itertools.product(range(1, 7), range(1, 5))))
def test_same_upper_is_keras_same(k: int, s: int) -> None:
    """Issue 18 measured Keras ``"same"`` = ``SAME_UPPER`` wherever ONNX's output is ``i * s`` (``k >= s``)."""
    if k >= s:
        assert padding.crop_from_onnx(1, k, s, auto_pad="SAME_UPPER") == geometry.crop_from_keras("same", k, s, None)


def test_crop_from_onnx_refuses_what_onnxruntime_refuses() -> None:
    for kwargs, message in [
        ({"output_padding": 2}, "output_padding must be in 0..1"),
        ({"pads": (-1, 0)}, "must not be negative"),
        ({"pads": (1, 0), "auto_pad": "VALID"}, "cannot be used together with auto_pad"),
        ({"auto_pad": "same"}, "auto_pad must be one of"),
        ({"output_shape": 9}, "output_shape 9 does not fit"),
    ]:
        with pytest.raises(ValueError, match=message):
            padding.crop_from_onnx(2, 3, 2, **kwargs)
    assert padding.crop_from_onnx(2, 3, 2, output_shape=6) == (0, -1)  # full 5 + stride - 1: accepted, adds a row


@pytest.mark.parametrize(("k", "s", "i"), SMALL)
def test_export_axis_reproduces_the_crop(k: int, s: int, i: int) -> None:
    full = geometry.full_length(i, k, s)
    for crop in itertools.product(range(-3, full + 2), repeat=2):
        if geometry.output_length(i, k, s, crop) <= 0:
            continue
        axis = padding.export_axis(i, k, s, crop)
        assert min(axis.pads) >= 0 and min(axis.rows) >= 0
        conv = list(range(axis.pads[0], full - axis.pads[1]))  # full-output positions the ConvTranspose keeps
        assert conv, "ConvTranspose output must not be empty"
        if axis.slice is not None:
            conv = conv[axis.slice[0] : axis.slice[1]]
        result = [None] * axis.rows[0] + conv + [None] * axis.rows[1]  # None: an added row
        window = [p if 0 <= p < full else None for p in range(crop[0], full - crop[1])]
        assert result == window, crop


# --- heads: every stage kind, both norms and every activation, in inference mode -------------------


def _head_cases() -> list[Any]:
    """tests/head_cases.py's heads to 8x8 (every stage kind, BatchNorm and GroupNorm, every activation), and
    a head of residual stages from a 2x3 input with GELU exact at the end."""
    from head_cases import SGD_CASES

    from upsample.head import HeadSpec

    residual = HeadSpec(
        [
            upsample.UpsampleSpec(3, 4, kernel_size=3, stride=2, padding="same", residual="projection"),
            upsample.SubpixelSpec(4, 4, scale=(2, 3), residual="nearest"),
        ],
        activation="sigmoid",
        norm={"kind": "group", "groups": 4, "epsilon": 1e-2},
        final_activation="gelu",
        input_size=(2, 3),
    )
    return [*(pytest.param(spec, id=name) for name, spec in SGD_CASES), pytest.param(residual, id="residual-group")]


@pytest.mark.parametrize("opset", [DEFAULT_OPSET, 18])
@pytest.mark.parametrize("spec", _head_cases())
def test_exported_head_matches_reference(spec: Any, opset: int, tmp_path: Path) -> None:
    from head_cases import batches, head_weights

    from upsample import head_reference

    weights = head_weights(spec)
    model = to_onnx(spec, weights, tmp_path / "head.onnx", input_size=spec.input_size, opset=opset)
    x, _ = batches(spec, 1)[0]
    expected = head_reference.forward(spec, weights, x, training=False)[0]
    got = nhwc(run_ort(onnx.load(tmp_path / "head.onnx"), nchw(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert model.opset_import[0].version == opset
    assert not {"Gelu", "GroupNormalization"} & {node.op_type for node in model.graph.node}


def test_to_onnx_head_refuses_layer_weights() -> None:
    from head_cases import SGD_CASES

    spec = SGD_CASES[0][1]
    with pytest.raises(TypeError, match="weights must be an upsample.HeadWeights for a HeadSpec, got Weights"):
        to_onnx(spec, upsample.init_weights(spec.stages[0]))


# --- dynamic spatial axes: one model at every size ------------------------------------------------


DYNAMIC_SIZES = [(1, 1), (3, 2), (5, 7), (2, 9)]
"""Spatial sizes one dynamic model runs at."""


def _dynamic_cases() -> list[Any]:
    """Every kind and residual mode whose output is an integer multiple of its input (or has no residual):
    crops with negative parts, a window off the full output at the shortest input, odd outputs, heads."""
    transposed = [
        upsample.UpsampleSpec(3, 3, kernel_size=4, stride=2, padding=1, residual="nearest"),
        upsample.UpsampleSpec(2, 3, kernel_size=(3, 2), stride=(2, 3), padding="same", residual="projection"),
        upsample.UpsampleSpec(2, 2, kernel_size=(5, 3), stride=(3, 1), padding=((1, 1), (-1, 3)), residual="nearest"),
        upsample.UpsampleSpec(3, 2, kernel_size=(3, 2), stride=(2, 3), padding=((-1, 2), (0, -2))),
        upsample.UpsampleSpec(1, kernel_size=1, stride=3, padding=((-2, 0), (1, -1))),  # window off at 1x1
        upsample.UpsampleSpec(2, kernel_size=3, stride=2, padding="valid"),  # 2i + 1, no residual
    ]
    layers = [pytest.param(spec, id=f"transposed-{i}") for i, spec in enumerate(transposed)]
    layers += [pytest.param(spec, id=f"{spec.to_dict()['kind']}-{i}") for i, spec in enumerate(kind_cases.SWEEP)]
    return layers + _head_cases()


@pytest.mark.parametrize("spec", _dynamic_cases())
def test_one_dynamic_model_matches_reference_at_every_size(spec: Any, tmp_path: Path) -> None:
    """One exported file, run at several spatial sizes, against the reference at each; H and W symbolic."""
    from head_cases import head_weights

    from upsample import head_reference
    from upsample.head import HeadSpec

    head = isinstance(spec, HeadSpec)
    if head:
        weights = head_weights(spec)
    else:
        weights = random_weights(spec, 2) if isinstance(spec, upsample.UpsampleSpec) else kind_cases.weights(spec, 2)
    to_onnx(spec, weights, tmp_path / "m.onnx", dynamic_spatial=True)
    model = onnx.load(tmp_path / "m.onnx")
    assert input_dims(model) == [
        ["batch", spec.in_channels, "height", "width"],
        ["batch", spec.out_channels, "out_height", "out_width"],
    ]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for size in DYNAMIC_SIZES:
        x = np.random.default_rng(size[0] * 10 + size[1]).normal(size=(2, *size, spec.in_channels)).astype(np.float32)
        if head:
            expected = head_reference.forward(spec, weights, x, training=False)[0]
        else:
            expected = reference.forward(spec, weights, x)
        got = nhwc(session.run(None, {"x": nchw(x)})[0])
        assert got.shape == expected.shape, (size, got.shape, expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"input {size}")
