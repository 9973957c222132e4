"""ONNX export and import at 1 and 3 spatial axes, run in onnxruntime (the executable definition of ONNX)
against the NumPy reference."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

import upsample
from upsample import HeadSpec, ResizeSpec, SubpixelSpec, UpsampleSpec, head_reference, reference

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from upsample.onnx import describe, from_onnx, to_onnx  # noqa: E402

SPECS = [
    UpsampleSpec(4, 3, kernel_size=(16,), stride=8, padding=4),
    UpsampleSpec(3, 3, kernel_size=(5,), stride=3, padding=((-1, 3),), residual="nearest"),
    SubpixelSpec(3, 2, scale=(3,), kernel_size=4, residual="projection"),
    ResizeSpec(3, 2, scale=(2,), method="bilinear", kernel_size=3),
    UpsampleSpec(3, 2, kernel_size=2, stride=2, spatial_dims=3, residual="projection"),
    UpsampleSpec(3, 3, kernel_size=(4, 3, 4), stride=(2, 1, 2), padding=((1, 1), (0, 2), (2, -1))),
    SubpixelSpec(3, 2, scale=(2, 1, 3), kernel_size=(3, 1, 2)),
    SubpixelSpec(2, 2, scale=2, kernel_size=3, residual="nearest", spatial_dims=3),
    ResizeSpec(3, 2, scale=(2, 2, 1), method="nearest", kernel_size=3),
    ResizeSpec(3, 3, scale=2, method="bilinear", kernel_size=(2, 3, 1), residual="nearest", spatial_dims=3),
]
SIZES = {1: [(1,), (5,)], 3: [(1, 1, 1), (2, 3, 2)]}


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model in onnxruntime on channels-last ``x``, returned channels-last."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ascontiguousarray(np.moveaxis(x, -1, 1))})
    return np.moveaxis(y, 1, -1)


def weights_of(spec) -> upsample.Weights:
    drawn = upsample.init_weights(spec, seed=1)
    bias = None if drawn.bias is None else np.random.default_rng(2).normal(size=drawn.bias.shape).astype(np.float32)
    return upsample.Weights(drawn.kernel, bias, drawn.skip)


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.KIND}-{s.spatial_dims}d-{i}" for i, s in enumerate(SPECS)])
def test_one_dynamic_model_runs_every_size_like_the_reference(spec) -> None:
    weights = weights_of(spec)
    model = to_onnx(spec, weights, dynamic_spatial=True)
    names = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[2:]]
    assert names == list(upsample.arguments.axis_names(spec.spatial_dims))  # symbolic spatial axes
    for seed, size in enumerate(SIZES[spec.spatial_dims]):
        x = np.random.default_rng(seed).normal(size=(2, *size, spec.in_channels)).astype(np.float32)
        np.testing.assert_allclose(run(model, x), reference.forward(spec, weights, x), rtol=1e-4, atol=1e-5)


def test_a_residual_with_a_non_integer_ratio_exports_at_a_fixed_size() -> None:
    spec = UpsampleSpec(3, 3, kernel_size=(5,), stride=3, padding=((-1, 2),), residual="nearest")  # 3i + 1
    weights = weights_of(spec)
    with pytest.raises(ValueError, match=r"input 4 -> output 13, 8 -> 25"):
        to_onnx(spec, weights, dynamic_spatial=True)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    model = to_onnx(spec, weights, input_size=5)
    np.testing.assert_allclose(run(model, x), reference.forward(spec, weights, x), rtol=1e-4, atol=1e-5)


def test_a_3d_shuffle_is_written_without_depth_to_space() -> None:
    model = to_onnx(
        SubpixelSpec(2, 2, scale=2, spatial_dims=3), weights_of(SubpixelSpec(2, 2, scale=2, spatial_dims=3))
    )
    ops = [node.op_type for node in model.graph.node]
    assert "DepthToSpace" not in ops and "Transpose" in ops and "Conv" in ops


@pytest.mark.parametrize(
    "head",
    [
        upsample.plan(4, (16,), 2, "subpixel", norm="group", final_activation="tanh"),
        upsample.plan(4, (4, 4, 4), 2, "transposed", norm="batch", activation="gelu"),
        upsample.plan(4, 8, 2, "resize", norm="layer", input_size=(2, 2, 2)),
        upsample.plan(4, 8, 2, "transposed", norm="instance", spatial_dims=1, activation="silu"),
    ],
    ids=["1d-group", "3d-batch", "3d-layer", "1d-instance"],
)
def test_heads_of_ranks_1_and_3_export_in_inference_mode(head: HeadSpec) -> None:
    weights = upsample.init_weights(head, seed=3)
    rng = np.random.default_rng(4)
    norms = tuple(
        None if n is None else type(n)(*(None if a is None else rng.uniform(0.5, 1.5, a.shape) for a in n.arrays()))
        for n in weights.norms
    )
    weights = type(weights)(weights.stages, norms).astype(np.float32)
    x = rng.normal(size=(2, *head.input_size, head.in_channels)).astype(np.float32)
    expected, _ = head_reference.forward(head, weights, x, training=False)
    np.testing.assert_allclose(run(to_onnx(head, weights), x), expected, rtol=1e-4, atol=1e-5)


def conv_transpose(kernel: np.ndarray, size: tuple[int, ...], **attributes) -> onnx.ModelProto:
    """One ``ConvTranspose`` node with a constant weight ``(C_in, C_out, *k)``, as other exporters write it."""
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="up", **attributes)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, kernel.shape[0], *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(kernel, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("kernel_shape", "size", "attributes"),
    [
        ((16,), (4,), {"strides": [8], "pads": [4, 4]}),  # HiFi-GAN
        ((4,), (3,), {"strides": [2], "pads": [1, 2], "output_padding": [1]}),
        ((3,), (5,), {"strides": [2], "auto_pad": "SAME_UPPER"}),
        ((2, 2, 2), (2, 3, 1), {"strides": [2, 2, 2]}),  # MONAI deconv
        ((4, 3, 2), (2, 2, 3), {"strides": [2, 1, 3], "pads": [1, 0, 1, 2, 1, 0], "output_padding": [1, 0, 2]}),
        ((3, 3, 3), (2, 2, 2), {"strides": [2, 2, 2], "output_shape": [4, 3, 5]}),
    ],
)
def test_from_onnx_reads_1d_and_3d_conv_transposes_as_onnxruntime_runs_them(kernel_shape, size, attributes) -> None:
    kernel = np.random.default_rng(5).normal(size=(3, 2, *kernel_shape)).astype(np.float32)
    model = conv_transpose(kernel, size, **attributes)
    spec, weights = from_onnx(model)
    assert spec.spatial_dims == len(size)
    x = np.random.default_rng(6).normal(size=(1, *size, 3)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": np.ascontiguousarray(np.moveaxis(x, -1, 1))})
    np.testing.assert_allclose(reference.forward(spec, weights, x), np.moveaxis(expected, 1, -1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(to_onnx(spec, weights), x), np.moveaxis(expected, 1, -1), rtol=1e-4, atol=1e-5)


def ramp(array: np.ndarray | None) -> np.ndarray | None:
    """Exact float32 values of ``array``'s shape (no random stream, so the bytes are the same everywhere)."""
    return None if array is None else (np.arange(array.size, dtype=np.float32).reshape(array.shape) % 7 + 1) / 8


def ramp_weights(spec) -> upsample.Weights | upsample.HeadWeights:
    drawn = upsample.init_weights(spec, seed=0)
    if isinstance(drawn, upsample.Weights):
        return upsample.Weights(ramp(drawn.kernel), ramp(drawn.bias), ramp(drawn.skip))
    stages = tuple(ramp_weights(stage) for stage in spec.stages)
    norms = tuple(None if n is None else type(n)(*(ramp(a) for a in n.arrays())) for n in drawn.norms)
    return upsample.HeadWeights(stages, norms)  # type: ignore[arg-type]


# sha256 (first 16 hex digits) of the 2-D graphs the exporter wrote before ranks 1 and 3 (commit f5f7ed0's
# upsample/onnx, run on these specs and ramp weights): 2-D files stay byte for byte what they were.
TWO_D_GRAPHS = [
    (UpsampleSpec(3, 2, kernel_size=4, stride=2, padding=1), {}, "39a47f94e5b0c8bd"),
    (
        UpsampleSpec(3, 3, kernel_size=(5, 3), stride=(3, 2), padding=((-1, 3), (2, 0)), residual="nearest"),
        {"input_size": (4, 5)},
        "610b761d4a573709",
    ),
    (SubpixelSpec(3, 2, scale=2, kernel_size=3, residual="projection"), {}, "dc2f228f51d2e074"),
    (SubpixelSpec(3, 2, scale=(2, 3), kernel_size=(2, 3)), {}, "9924f3285f98aac0"),
    (
        SubpixelSpec(3, 2, scale=(2, 3), kernel_size=(2, 3)),
        {"input_size": (3, 4), "dynamic_spatial": False},
        "19e39280f2a1357f",
    ),
    (ResizeSpec(3, 3, scale=(2, 3), method="bilinear", kernel_size=3, residual="nearest"), {}, "9f2e62217f787843"),
    (
        upsample.plan(4, (8, 12), 2, "subpixel", norm="group", final_activation="tanh", input_size=(2, 3)),
        {},
        "f0b11312885c874c",
    ),
]


@pytest.mark.parametrize(("spec", "options", "digest"), TWO_D_GRAPHS, ids=range(len(TWO_D_GRAPHS)))
def test_2d_exports_are_the_graphs_written_before_ranks_1_and_3(spec, options, digest) -> None:
    graph = to_onnx(spec, ramp_weights(spec), **options).graph.SerializeToString()
    assert hashlib.sha256(graph).hexdigest()[:16] == digest


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (UpsampleSpec(4, 3, kernel_size=(16,), stride=8, padding=4), (5,)),
        (ResizeSpec(3, 2, scale=(2,), method="bilinear", kernel_size=3), (5,)),
        (UpsampleSpec(3, 2, kernel_size=(4, 3, 4), stride=(2, 1, 2), padding=((1, 1), (0, 2), (2, 1))), (2, 3, 4)),
        (ResizeSpec(3, 2, scale=(2, 2, 1), method="nearest", kernel_size=(3, 1, 2), use_bias=False), (2, 3, 4)),
    ],
    ids=["1d-transposed", "1d-resize", "3d-transposed", "3d-resize"],
)
def test_describe_finds_1d_and_3d_layers_at_their_input_size(spec, size) -> None:
    model = to_onnx(spec, weights_of(spec))
    (found,) = describe(model)  # dynamic: scales from the constants, size unknown
    assert (found.kind, found.spec, found.input_size, found.problem) == (spec.KIND, spec, None, None)
    (found,) = describe(model, input_size=size)  # scales from the inferred shapes
    assert (found.spec, found.input_size, found.problem) == (spec, size, None) and found.verdict is not None


@pytest.mark.parametrize(
    "make",
    [
        lambda nn: nn.ConvTranspose1d(3, 2, 16, stride=8, padding=4),  # HiFi-GAN
        lambda nn: nn.ConvTranspose1d(3, 2, 4, stride=3, padding=1, output_padding=2),
        lambda nn: nn.ConvTranspose3d(3, 2, 2, stride=2),  # MONAI deconv
        lambda nn: nn.ConvTranspose3d(3, 2, (4, 3, 2), stride=(2, 1, 2), padding=(1, 1, 0), output_padding=(1, 0, 1)),
    ],
    ids=["1d-hifigan", "1d-output-padding", "3d-monai", "3d-mixed"],
)
def test_from_onnx_reads_torch_conv_transposes_1d_and_3d(make, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = make(torch.nn).eval()
    rank = layer.weight.ndim - 2
    size = (5,) if rank == 1 else (3, 2, 4)
    x = np.random.default_rng(7).normal(size=(2, *size, 3)).astype(np.float32)
    path = tmp_path / "layer.onnx"
    torch_x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(layer, (torch_x,), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
    spec, weights = from_onnx(str(path))
    with torch.no_grad():
        expected = np.moveaxis(layer(torch_x).numpy(), 1, -1)
    assert spec.spatial_dims == rank
    np.testing.assert_allclose(reference.forward(spec, weights, x), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(to_onnx(spec, weights), x), expected, rtol=1e-4, atol=1e-5)
