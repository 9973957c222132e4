"""ONNX ``ConvTranspose`` nodes as specs and canonical weights, so an ONNX model's upsampling
layer can be rebuilt in any framework; and every upsampling pattern of a model (transposed, sub-pixel,
resize-convolution, dense projection) as a spec judged at its own input size (``upsample inspect model.onnx``).

The node's weight ``W`` is ``(C_in, C_out // group, kh, kw)`` as in torch (canonical kernel ``W.transpose(2, 3,
0, 1)``); ``group`` and ``dilations`` are the spec's ``groups`` and ``dilation``; its padding attributes become
crops by :func:`upsample.onnx.padding.crop_from_onnx` (of the dilated extent), which follows onnxruntime where
it and the operator text disagree.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnx
from onnx import numpy_helper

from upsample import geometry
from upsample.arguments import SPATIAL_DIMS, Axes, IntOrAxes, as_axes, sequence_items
from upsample.onnx import padding, patterns
from upsample.onnx.blur import read_blur
from upsample.onnx.patterns import OnnxLayer, Shape
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

ModelSource = onnx.ModelProto | str | os.PathLike[str] | bytes


def _model(source: ModelSource) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, bytes):
        return onnx.load_model_from_string(source)
    if isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"ONNX model file {where!r} does not exist")
        return onnx.load(where)
    raise TypeError(f"model_or_path must be an onnx.ModelProto, a path or bytes, got {type(source).__name__}")


def _conv_transposes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "ConvTranspose" and n.domain in ("", "ai.onnx")]


def _label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"#{index}"


def _select(nodes: list[onnx.NodeProto], node: str | int | None) -> onnx.NodeProto:
    labels = [_label(n, i) for i, n in enumerate(nodes)]
    if not nodes:
        raise ValueError("the model has no ConvTranspose node")
    if node is None:
        if len(nodes) > 1:
            raise ValueError(f"the model has {len(nodes)} ConvTranspose nodes {labels}; pick one with node=")
        return nodes[0]
    if isinstance(node, int) and not isinstance(node, bool):
        if not 0 <= node < len(nodes):
            raise ValueError(f"node index must be in 0..{len(nodes) - 1}, got {node}")
        return nodes[node]
    if isinstance(node, str) and node in labels:
        return nodes[labels.index(node)]
    raise ValueError(f"node must be the name or index of a ConvTranspose node, one of {labels}, got {node!r:.80}")


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs, by name."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _shapes(model: onnx.ModelProto, input_size: Axes | None = None) -> dict[str, Shape]:
    """Every tensor's shape that the model declares or shape inference (with data propagation, which follows
    the ``Shape`` -> ``Concat`` -> ``Reshape`` chains exporters write) finds; ``input_size`` sets the spatial
    size of graph inputs with that many spatial axes whose size is symbolic."""
    if input_size is not None:
        model = _with_input_size(model, input_size)
    try:
        graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception:  # a model shape inference cannot handle still has its declared shapes
        graph = model.graph
    shapes: dict[str, Shape] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims
            )
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    return shapes


def _with_input_size(model: onnx.ModelProto, size: Axes) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs with ``len(size)`` spatial axes have spatial size ``size``; a declared
    size that differs is refused."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    initializers = {t.name for t in model.graph.initializer}
    for info in copy.graph.input:
        dims = info.type.tensor_type.shape.dim
        if info.name in initializers or len(dims) != 2 + len(size):
            continue
        for axis, dim in enumerate(dims[2:]):
            if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size[axis]:
                declared = tuple(d.dim_value for d in dims[2:])
                raise ValueError(
                    f"input_size {size} differs from the size {declared} the model declares for its input "
                    f"{info.name!r}; input_size is for models whose input size is symbolic"
                )
            dim.Clear()
            dim.dim_value = size[axis]
    return copy


def _static_sizes(model: onnx.ModelProto) -> dict[str, Axes]:
    """The spatial size of every tensor with 1 to 3 spatial axes whose size the model declares or shape inference
    finds."""
    sizes = {name: patterns.spatial(shape) for name, shape in _shapes(model).items()}
    return {name: size for name, size in sizes.items() if size is not None}


def _node_spec(
    node: onnx.NodeProto, label: str, constants: dict[str, np.ndarray], size: Axes | None
) -> tuple[UpsampleSpec, Weights]:
    """The spec and weights of one node (1-D, 2-D or 3-D); ``size`` is its input's spatial size if known."""
    if len(node.input) < 2 or node.input[1] not in constants:
        raise ValueError(f"ConvTranspose node {label!r}: its weight is not a constant (initializer), so it has no spec")
    kernel = constants[node.input[1]]
    bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and bias is None:
        raise ValueError(f"ConvTranspose node {label!r}: its bias is not a constant (initializer)")
    rank = kernel.ndim - 2
    if rank not in SPATIAL_DIMS:
        raise ValueError(
            f"ConvTranspose node {label!r} is {rank}-D (weight shape {kernel.shape}); a spec is 1-D, 2-D or 3-D"
        )
    c_in, c_out_per_group, *taps = kernel.shape
    if size is not None and len(size) != rank:
        raise ValueError(f"ConvTranspose node {label!r} is {rank}-D but its input size {size} has {len(size)} axes")
    attrs = patterns.attributes(node)
    ones = [1] * rank
    group, dilations = attrs.get("group", 1), list(attrs.get("dilations", ones))
    if not isinstance(group, int) or group < 1:
        raise ValueError(f"ConvTranspose node {label!r}: group must be a positive int, got {group!r}")
    if len(dilations) != rank or min(dilations) < 1:
        raise ValueError(f"ConvTranspose node {label!r}: dilations must be {rank} positive ints, got {dilations}")
    if list(attrs.get("kernel_shape", taps)) != taps:
        raise ValueError(
            f"ConvTranspose node {label!r}: kernel_shape {attrs['kernel_shape']} does not match its weight "
            f"{kernel.shape}"
        )
    stride = list(attrs.get("strides", ones))
    pads = list(attrs.get("pads", [0] * 2 * rank))
    output_padding = list(attrs.get("output_padding", [0] * rank))
    output_shape = list(attrs["output_shape"])[-rank:] if "output_shape" in attrs else None
    if output_shape is not None and size is None:
        raise ValueError(
            f"ConvTranspose node {label!r} sets output_shape={output_shape}, whose crops depend on the input size, "
            f"and the model does not declare a static input size for it; pass input_size=(H, W)"
        )
    try:
        crops = tuple(
            padding.crop_from_onnx(
                1 if size is None else size[a],
                geometry.extent(taps[a], dilations[a]),  # every padding form counts the dilated extent
                stride[a],
                pads=(pads[a], pads[a + rank]),
                output_padding=output_padding[a],
                auto_pad=attrs.get("auto_pad", "NOTSET"),
                output_shape=None if output_shape is None else output_shape[a],
            )
            for a in range(rank)
        )
    except ValueError as error:
        raise ValueError(f"ConvTranspose node {label!r}: {error}") from None
    try:
        spec = UpsampleSpec(
            c_in,
            c_out_per_group * group,
            kernel_size=tuple(taps),
            stride=tuple(stride),
            padding=crops,
            use_bias=bias is not None,
            groups=group,
            dilation=tuple(dilations),
        )
    except ValueError as error:
        raise ValueError(f"ConvTranspose node {label!r}: {error}") from None
    if size is not None:
        try:
            spec.output_size(size)
        except ValueError as error:
            raise ValueError(f"ConvTranspose node {label!r}: {error}") from None
    return spec, Weights(kernel.transpose(*range(2, 2 + rank), 0, 1), bias)


def from_onnx(
    model_or_path: ModelSource, node: str | int | None = None, input_size: IntOrAxes | None = None
) -> tuple[UpsampleSpec, Weights]:
    """The spec and canonical weights of a ``ConvTranspose`` node, computing what onnxruntime computes.

    Args:
        model_or_path: an ``onnx.ModelProto``, a path to a ``.onnx`` file, or its bytes.
        node: the node's name or its index among the ``ConvTranspose`` nodes; ``None`` when there is one.
        input_size: the node's input spatial size (``(H, W)`` in 2-D; an int for every axis); only
            ``output_shape`` needs it, and by default it is read from the model's static shapes.

    ``group`` and ``dilations`` become the spec's ``groups`` and ``dilation`` (the padding attributes count the
    dilated extent, as onnxruntime does); anything onnxruntime refuses is refused. A blur that ``to_onnx`` wrote after
    the node is read into the spec.
    """
    model = _model(model_or_path)
    nodes = _conv_transposes(model)
    chosen = _select(nodes, node)
    constants = _constants(model)
    if input_size is None:
        size = _static_sizes(model).get(chosen.input[0])
    else:
        weight = constants.get(chosen.input[1]) if len(chosen.input) > 1 else None
        size = as_axes("input_size", input_size, 2 if weight is None else weight.ndim - 2, 1)
    spec, weights = _node_spec(chosen, _label(chosen, nodes.index(chosen)), constants, size)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    found = read_blur(
        chosen.output[0], spec.out_channels, spec.spatial_dims, patterns.Graph({}, {}, consumers, constants)
    )
    return (spec if found is None else dataclasses.replace(spec, blur=found[0])), weights


def _input_rank(model: onnx.ModelProto, input_size: IntOrAxes) -> int:
    """The number of spatial axes ``input_size`` is for: its length, or for an int the first graph input's."""
    items = sequence_items(input_size)
    if items is not None:
        return len(items)
    initializers = {t.name for t in model.graph.initializer}
    for info in model.graph.input:
        dims = len(info.type.tensor_type.shape.dim)
        if info.name not in initializers and dims - 2 in SPATIAL_DIMS:
            return dims - 2
    return 2


def _blurred(layer: OnnxLayer, last: onnx.NodeProto | None, graph: patterns.Graph) -> OnnxLayer:
    """``layer`` with the blur :func:`upsample.onnx.blur.emit_blur` wrote after its ``last`` node read into its spec,
    if there is one (so a layer with a blur is never reported without it)."""
    if layer.spec is None or last is None:
        return layer
    found = read_blur(last.output[0], layer.spec.out_channels, layer.spec.spatial_dims, graph)
    if found is None:
        return layer
    blur, nodes = found
    spec = dataclasses.replace(layer.spec, blur=blur)
    return patterns.judged(layer.name, spec, layer.input_size, layer.kind, (*layer.nodes, *nodes))


def describe(model_or_path: ModelSource, input_size: IntOrAxes | None = None) -> list[OnnxLayer]:
    """Every upsampling layer of a model in graph order, each judged at its own input size (what
    ``upsample inspect model.onnx`` lists).

    Recognised: ``ConvTranspose`` (1-D, 2-D or 3-D); ``Conv`` + ``DepthToSpace`` (2-D sub-pixel, CRD or DCR: the
    spec is the same, the weights' channel order differs; a grouped ``Conv`` only before CRD);
    ``Resize``/``Upsample`` + ``Conv`` (resize-convolution, 1-D to 3-D; the 1-D/3-D shuffle as
    ``Reshape``/``Transpose`` is not recognised); and ``Gemm``/``MatMul`` (+ ``Add``) + ``Reshape`` from a 1x1 map
    or a flat vector to a larger map (a dense projection, reported as the transposed convolution whose kernel is
    that map's size, on a 1x1 input). ``group`` and ``dilations`` of a ``ConvTranspose`` or ``Conv`` are the
    spec's ``groups`` and ``dilation``.
    Each node's input size comes from shape inference from the model's input; ``input_size`` gives the
    spatial size of a model input (1 to 3 spatial axes) whose size is symbolic. A size still unknown is ``None``, never
    assumed.
    """
    model = _model(model_or_path)
    size = None if input_size is None else as_axes("input_size", input_size, _input_rank(model, input_size), 1)
    shapes, constants = _shapes(model, size), _constants(model)
    producers = {output: n for n in model.graph.node for output in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    graph = patterns.Graph(shapes, producers, consumers, constants)
    by_name = {n.name: n for n in model.graph.node}
    transposed = _conv_transposes(model)
    layers = []
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node in transposed:
            label = _label(node, transposed.index(node))
            node_size = patterns.spatial(shapes.get(node.input[0]))
            try:
                spec, _ = _node_spec(node, label, constants, node_size)
            except ValueError as error:
                layers.append(OnnxLayer(label, None, node_size, str(error), "transposed", (label,)))
            else:
                layers.append(_blurred(patterns.judged(label, spec, node_size, "transposed", (label,)), node, graph))
        elif node.op_type == "Conv":
            found = patterns.conv_pattern(node, node.name or f"Conv#{index}", graph)
            layers.extend(_blurred(layer, by_name.get(layer.nodes[-1]), graph) for layer in found)
        elif node.op_type in ("Gemm", "MatMul"):
            layers.extend(patterns.dense_pattern(node, node.name or f"{node.op_type}#{index}", graph))
    return layers
