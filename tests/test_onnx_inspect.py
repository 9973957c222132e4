"""``describe`` and ``upsample inspect MODEL.onnx`` on whole heads: planned heads of every mode exported by
torch (legacy tracer and dynamo) and by ``upsample.onnx.to_onnx``, and a ``Linear`` + ``Unflatten`` + head
model. Each layer must be found as its stage's spec, at the stage's true input size (the sizes chained by
``output_size`` from the model input), with the verdict the spec's own ``diagnose`` gives there; onnxruntime
confirms the model's output size; a size shape inference cannot know is reported as unknown.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import required_backends

import upsample
from upsample import backends
from upsample.weights import init_weights

_missing = backends.missing_packages(("onnx", "onnxruntime", "torch"))
if _missing:
    _message = f'{", ".join(_missing)} not installed: pip install "upsample[onnx,torch]"'
    if "onnx" in required_backends():
        pytest.fail(_message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)", pytrace=False)
    pytest.skip(_message, allow_module_level=True)

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from upsample.cli import main  # noqa: E402
from upsample.onnx import describe, to_onnx  # noqa: E402

MODES = ("transposed", "subpixel", "resize")
EXPORTERS = ("legacy", "dynamo", "to_onnx")


def truth(stages: list[Any], size: tuple[int, int]) -> list[tuple[Any, tuple[int, int]]]:
    """Each stage with its input size, chained by the stages' own ``output_size``."""
    found = []
    for stage in stages:
        found.append((stage, size))
        size = stage.output_size(size)
    return found


def with_biases(model: torch.nn.Module) -> torch.nn.Module:
    """Nonzero biases (an exporter may drop an all-zero bias as a no-op, which would change the spec)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_()
    return model.eval()


def torch_export(model: torch.nn.Module, x: torch.Tensor, path: Path, exporter: str) -> None:
    """``torch.onnx.export`` with a dynamic batch, by the legacy tracer or dynamo."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
        else:
            batch = ({0: torch.export.Dim("b", min=1, max=64)},)
            torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamic_shapes=batch, dynamo=True)


def output_size(path: Path, x: np.ndarray) -> tuple[int, int]:
    """The model's output ``(H, W)`` as onnxruntime computes it."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    return (y.shape[2], y.shape[3])


def assert_found(layers: list[Any], expected: list[tuple[Any, tuple[int, int]]], kinds: list[str]) -> None:
    assert [layer.kind for layer in layers] == kinds
    for layer, (stage, size) in zip(layers, expected, strict=True):
        assert layer.problem is None, layer
        assert layer.spec == stage, layer.name
        assert layer.input_size == size, layer.name
        assert layer.verdict == stage.diagnose(size).verdict, layer.name


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("mode", MODES)
def test_planned_heads_are_found_stage_by_stage(tmp_path: Path, mode: str, exporter: str) -> None:
    """Every stage at its own input size: the 1x1 first stage is ``ConvTranspose`` or, where torch's matmul
    fast path was exported, a dense projection (the same spec); the later stages are each mode's pattern."""
    spec = upsample.plan(8, 32, mode=mode, out_channels=3)
    path = tmp_path / "head.onnx"
    x = np.random.default_rng(0).normal(size=(2, 8, 1, 1)).astype(np.float32)
    if exporter == "to_onnx":
        to_onnx(spec, init_weights(spec, seed=0), path, input_size=1)
    else:
        torch_export(with_biases(spec.build("torch")), torch.from_numpy(x), path, exporter)
    expected = truth(list(spec.stages), (1, 1))
    given = (1, 1) if exporter == "to_onnx" else None  # to_onnx may leave height and width symbolic
    layers = describe(path, input_size=given)
    # the 1x1 first stage: ConvTranspose, or torch's matmul fast path (a dense projection) when it was traced
    first = layers[0].kind if layers and layers[0].kind in ("transposed", "dense") else "transposed"
    assert_found(layers, expected, [first] + [mode] * (len(expected) - 1))
    assert output_size(path, x) == spec.output_size(1) == (32, 32)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("unflatten", [(8, 4, 4), (8, 1, 1)])
def test_linear_unflatten_head(tmp_path: Path, exporter: str, unflatten: tuple[int, int, int]) -> None:
    """``nn.Linear`` to a map is a dense projection from a vector (as from a 1x1 map) when the map is larger
    than 1x1, and no upsampler when it is 1x1; the sub-pixel head after it is found at its true sizes (dynamo),
    or with its sizes unknown, never guessed (legacy)."""
    side = unflatten[1]
    head = upsample.plan(8, 32, mode="subpixel", out_channels=3, input_size=side)
    model = with_biases(
        torch.nn.Sequential(
            torch.nn.Linear(16, int(np.prod(unflatten))), torch.nn.Unflatten(1, unflatten), head.build("torch")
        )
    )
    path = tmp_path / "model.onnx"
    x = np.random.default_rng(1).normal(size=(2, 16)).astype(np.float32)
    torch_export(model, torch.from_numpy(x), path, exporter)
    stages = list(head.stages)
    kinds = ["subpixel" if isinstance(s, upsample.SubpixelSpec) else "dense" for s in stages]
    if side > 1:
        stages.insert(0, upsample.UpsampleSpec(16, 8, kernel_size=side, stride=1))
        kinds.insert(0, "dense")
    layers = describe(path)
    if exporter == "legacy":  # its Unflatten computes the shape with Mod and Slice, which shape inference cannot follow
        assert len(layers) == len(head.stages) and any(layer.input_size is None for layer in layers)
        for layer, (stage, size) in zip(layers, truth(list(head.stages), (side, side)), strict=True):
            if layer.input_size is None:  # unknown, never guessed
                assert layer.verdict is None and (layer.spec == stage or "unknown size" in (layer.problem or ""))
            else:
                assert (layer.spec, layer.input_size, layer.verdict) == (stage, size, stage.diagnose(size).verdict)
    else:
        assert_found(layers, truth(stages, (1, 1)), kinds)
    assert output_size(path, x) == (32, 32)


def sized(model: onnx.ModelProto, size: tuple[Any, Any] = ("h", "w")) -> onnx.ModelProto:
    """A copy of the model whose input's height and width are ``size``: numbers, or names (symbolic)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for axis, value in zip((2, 3), size, strict=True):
        dim = copy.graph.input[0].type.tensor_type.shape.dim[axis]
        dim.Clear()
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    return copy


def test_an_unknown_size_is_reported_as_unknown(tmp_path: Path) -> None:
    """With a symbolic input size no layer's size or verdict is guessed; ``input_size=`` gives the true ones;
    an ``input_size`` against a declared size is refused."""
    spec = upsample.plan(4, (12, 16), mode="resize", input_size=(3, 4))
    model = to_onnx(spec, init_weights(spec, seed=0), input_size=(3, 4))
    with pytest.raises(ValueError, match=r"input_size \(2, 2\) differs from the size \(3, 4\)"):
        describe(sized(model, (3, 4)), input_size=2)
    layers = describe(sized(model))
    assert [(layer.spec, layer.input_size, layer.verdict) for layer in layers] == [(s, None, None) for s in spec.stages]
    expected = truth(list(spec.stages), (3, 4))
    assert_found(describe(sized(model), input_size=(3, 4)), expected, ["resize"] * len(spec.stages))
    assert_found(describe(sized(model, (3, 4))), expected, ["resize"] * len(spec.stages))


def test_cli_lists_every_layer_with_its_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``upsample inspect MODEL.onnx``: one entry per layer with its kind, true input size and the spec's
    verdict; a symbolic size is said to be unknown, and ``--input-size`` resolves it."""
    spec = upsample.plan(8, 16, mode="subpixel", out_channels=3)
    path = tmp_path / "head.onnx"
    torch_export(with_biases(spec.build("torch")), torch.zeros(2, 8, 1, 1), path, "legacy")
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    expected = truth(list(spec.stages), (1, 1))
    first = text.count("dense projection ") + text.count("transposed convolution ")
    assert first == 1 and text.count("sub-pixel convolution ") == len(expected) - 1
    for stage, size in expected:
        out = stage.output_size(size)
        assert f"{size[0]}x{size[1]} -> {out[0]}x{out[1]}" in text
        assert stage.diagnose(size).verdict.split(",")[0] in text
    assert "1x1 -> 2x2" not in text and "no effect" not in text

    stage = upsample.SubpixelSpec(4, 2, scale=2)
    unknown = tmp_path / "symbolic.onnx"
    onnx.save(sized(to_onnx(stage, init_weights(stage, seed=0), input_size=5)), unknown)
    assert main(["inspect", str(unknown)]) == 0
    text = capsys.readouterr().out
    assert "input size unknown: give --input-size" in text and "coverage" not in text
    assert main(["inspect", str(unknown), "--input-size", "5"]) == 0
    text = capsys.readouterr().out
    assert "5x5 -> 10x10" in text and stage.diagnose(5).verdict.split(",")[0] in text


def conv_model(first: onnx.NodeProto | None, conv: dict[str, Any], last: onnx.NodeProto | None) -> onnx.ModelProto:
    """``x (1, 4, 5, 5)`` -> ``first`` (writes ``r``) -> ``Conv`` 4 -> 8 channels, 3x3 (writes ``c``) -> ``last``."""
    weight = onnx.numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
    nodes = [
        n
        for n in (first, onnx.helper.make_node("Conv", ["r" if first else "x", "w"], ["c"], name="conv", **conv), last)
        if n
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 5, 5])],
        [onnx.helper.make_tensor_value_info(nodes[-1].output[0], onnx.TensorProto.FLOAT, None)],
        [weight, onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_patterns_without_a_spec_say_why() -> None:
    """DCR is the same sub-pixel spec; a strided convolution, non-"same" padding or a coordinate convention that is
    not ONNX's four (``tf_crop_and_resize``) has none."""
    same = {"pads": [1, 1, 1, 1]}
    for mode in ("CRD", "DCR"):
        shuffle = onnx.helper.make_node("DepthToSpace", ["c"], ["y"], name="d2s", blocksize=2, mode=mode)
        (layer,) = describe(conv_model(None, same, shuffle))
        assert (layer.kind, layer.nodes, layer.input_size) == ("subpixel", ("conv", "d2s"), (5, 5))
        assert layer.spec == upsample.SubpixelSpec(4, 2, scale=2, use_bias=False)
        assert layer.verdict == layer.spec.diagnose(5).verdict
    (strided,) = describe(conv_model(None, {**same, "strides": [2, 2]}, shuffle))
    assert strided.spec is None and "strides=[2, 2]" in (strided.problem or "")
    (valid,) = describe(conv_model(None, {}, shuffle))
    assert valid.spec is None and "pads=[0, 0, 0, 0]" in (valid.problem or "")
    for coordinates in ("half_pixel", "align_corners", "tf_crop_and_resize"):
        modes = {"mode": "linear", "coordinate_transformation_mode": coordinates}
        resize = onnx.helper.make_node("Resize", ["x", "", "scales"], ["r"], name="up", **modes)
        (layer,) = describe(conv_model(resize, same, None))
        assert (layer.kind, layer.nodes, layer.input_size) == ("resize", ("up", "conv"), (5, 5))
        if coordinates == "tf_crop_and_resize":
            assert layer.spec is None and "coordinates must be one of" in (layer.problem or "")
        else:
            want = upsample.ResizeSpec(4, 8, scale=2, method="linear", use_bias=False, coordinates=coordinates)
            assert layer.spec == want and layer.verdict == want.diagnose(5).verdict
