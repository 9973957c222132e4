"""The upsampling patterns :func:`upsample.onnx.describe` recognises in an ONNX graph, each as the spec of
its kind: ``Conv`` + ``DepthToSpace`` (sub-pixel), ``Resize``/``Upsample`` + ``Conv`` (resize-convolution) and
``Gemm``/``MatMul`` (+ ``Add``) + ``Reshape`` (a dense projection from a 1x1 map or a flat vector), with
:class:`OnnxLayer`, the record each found layer becomes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

from upsample import conv_geometry, geometry, resize_table
from upsample.arguments import SPATIAL_DIMS, Axes
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.interpolation import Interpolation
from upsample.spec import UpsampleSpec


class OnnxLayer(NamedTuple):
    """One upsampling layer found in a model, as :func:`describe` reads it."""

    name: str
    """The node's name, or ``#n`` (its position among the model's ``ConvTranspose`` nodes) when unnamed; for
    a pattern of several nodes, the name of the node holding the weights."""
    spec: UpsampleSpec | Any | None
    """The layer's spec (``UpsampleSpec``, ``SubpixelSpec`` or ``ResizeSpec``); ``None`` when it has none
    (``problem`` says why)."""
    input_size: Axes | None
    """The layer's input spatial size (``(H, W)`` in 2-D) from shape inference through the graph; ``None`` when
    unknown."""
    problem: str | None
    kind: str = "transposed"
    """``"transposed"`` (``ConvTranspose``), ``"subpixel"`` (``Conv`` + ``DepthToSpace``), ``"resize"``
    (``Resize``/``Upsample`` + ``Conv``) or ``"dense"`` (``Gemm``/``MatMul`` + ``Reshape`` from a 1x1 map or
    a flat vector to a spatial map: a transposed convolution whose kernel is the output size)."""
    nodes: tuple[str, ...] = ()
    """The names of the nodes that make up the layer, in graph order."""
    verdict: str | None = None
    """``spec.diagnose(input_size).verdict``, or ``None`` when the spec or the input size is unknown."""


UNKNOWN_SIZE = "input size unknown: give --input-size (input_size=) for the model's input"
"""What :func:`describe` says of a layer whose input size shape inference could not find."""


Shape = tuple[int | None, ...]
"""A tensor's dimensions, ``None`` where shape inference found no number."""


def spatial(shape: Shape | None) -> Axes | None:
    """The spatial size of a channels-first shape ``(N, C, *spatial)`` (1 to 3 axes) when every axis is known."""
    if shape is None or len(shape) - 2 not in SPATIAL_DIMS or None in shape[2:]:
        return None
    return tuple(shape[2:])  # type: ignore[arg-type]


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes by name, ``auto_pad`` as text."""
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if isinstance(values.get("auto_pad"), bytes):
        values["auto_pad"] = values["auto_pad"].decode()
    return values


class Graph(NamedTuple):
    """The tensors' shapes and who writes and reads them."""

    shapes: dict[str, Shape]
    producers: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    constants: dict[str, np.ndarray]

    def only_user(self, name: str) -> onnx.NodeProto | None:
        """The one node reading ``name`` (``Shape`` nodes aside), if there is exactly one."""
        users = [n for n in self.consumers.get(name, []) if n.op_type != "Shape"]
        return users[0] if len(users) == 1 else None


def judged(name: str, spec: Any, size: Axes | None, kind: str, nodes: tuple[str, ...]) -> OnnxLayer:
    """The layer with ``spec.diagnose(size).verdict`` when the size is known."""
    if size is None:
        return OnnxLayer(name, spec, None, None, kind, nodes)
    try:
        verdict = spec.diagnose(size).verdict
    except ValueError as error:  # a size the spec refuses (too large, or cropped to nothing)
        return OnnxLayer(name, spec, size, f"at input size {size}: {error}", kind, nodes)
    return OnnxLayer(name, spec, size, None, kind, nodes, verdict)


SAME_PADDING_NOTE = (
    "a spec's convolution has stride 1 and pads (e - 1) // 2 before and the rest after, e = d * (k - 1) + 1 the "
    "dilated extent"
)


def _conv_pads(attrs: dict[str, Any], extent: list[int]) -> list[int]:
    """The ``Conv``'s zero rows in ONNX's ``pads`` order at stride 1: ``pads``, or what ``auto_pad`` makes of the
    extent (``SAME_UPPER``: the odd row after; ``SAME_LOWER``: before; ``VALID``: none)."""
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return list(attrs.get("pads", [0] * 2 * len(extent)))
    totals = [e - 1 if auto_pad in ("SAME_UPPER", "SAME_LOWER") else 0 for e in extent]
    before = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
    return before + [t - b for t, b in zip(totals, before, strict=True)]


def conv_pattern(node: onnx.NodeProto, label: str, graph: Graph) -> list[OnnxLayer]:
    """A ``Conv`` followed by ``DepthToSpace`` (sub-pixel) or after ``Resize``/``Upsample`` (resize-convolution);
    its ``group`` and ``dilations`` are the spec's ``groups`` and ``dilation``."""
    shuffle = graph.only_user(node.output[0])
    shuffle = shuffle if shuffle is not None and shuffle.op_type == "DepthToSpace" else None
    resize = graph.producers.get(node.input[0])
    resize = resize if resize is not None and resize.op_type in ("Resize", "Upsample") else None
    if shuffle is None and resize is None:
        return []
    kind = "subpixel" if shuffle is not None else "resize"
    nodes = tuple(n.name for n in (resize, node, shuffle) if n is not None)
    source = node.input[0] if resize is None else resize.input[0]
    size = spatial(graph.shapes.get(source))
    kernel = [d for d in graph.shapes.get(node.input[1]) or () if d is not None]
    rank = len(kernel) - 2
    if rank not in SPATIAL_DIMS or (shuffle is not None and rank != 2):
        problem = f"{kind} pattern at Conv {label!r}: its weight shape is unknown"
        return [OnnxLayer(label, None, size, problem, kind, nodes)]
    c_conv, c_in_per_group, *window = kernel
    attrs, ones = attributes(node), [1] * rank
    group = attrs.get("group", 1)
    strides, dilations = list(attrs.get("strides", ones)), list(attrs.get("dilations", ones))
    found = (
        f"group={group}, strides={strides}, dilations={dilations}, pads={list(attrs.get('pads', [0] * 2 * rank))}, "
        f"auto_pad={attrs.get('auto_pad', 'NOTSET')}"
    )
    if not isinstance(group, int) or group < 1 or len(dilations) != rank or min(dilations) < 1:
        return [OnnxLayer(label, None, size, f"Conv {label!r} has {found}; ONNX refuses them", kind, nodes)]
    extent = [geometry.extent(k, d) for k, d in zip(window, dilations, strict=True)]
    same = [side for sides in zip(*map(conv_geometry.same_padding, extent), strict=True) for side in sides]
    if strides != ones or _conv_pads(attrs, extent) != same:
        return [OnnxLayer(label, None, size, f"Conv {label!r} has {found}; {SAME_PADDING_NOTE}", kind, nodes)]
    c_in = c_in_per_group * group
    conv: dict[str, Any] = {"groups": group, "dilation": tuple(dilations)}
    use_bias = len(node.input) > 2 and bool(node.input[2])
    if shuffle is not None:
        block = helper.get_attribute_value(next(a for a in shuffle.attribute if a.name == "blocksize"))
        if c_conv % (block * block):
            problem = f"Conv {label!r} gives {c_conv} channels, not a multiple of blocksize**2 = {block * block}"
            return [OnnxLayer(label, None, size, problem, kind, nodes)]
        mode = attributes(shuffle).get("mode", b"DCR")
        if group != 1 and (mode.decode() if isinstance(mode, bytes) else mode) != "CRD":
            problem = (
                f"Conv {label!r} has group={group} before DepthToSpace {shuffle.name!r} mode DCR, whose channel order "
                f"mixes the groups' outputs across block offsets; a spec's grouped shuffle is CRD"
            )
            return [OnnxLayer(label, None, size, problem, kind, nodes)]
        try:
            spec: Any = SubpixelSpec(c_in, c_conv // (block * block), block, tuple(window), use_bias=use_bias, **conv)
        except ValueError as error:
            return [OnnxLayer(label, None, size, f"Conv {label!r}: {error}", kind, nodes)]
        return [judged(label, spec, size, kind, nodes)]
    assert resize is not None
    setting, factor = _resize_method(resize), _resize_factor(resize, graph)
    if isinstance(setting, str):
        return [OnnxLayer(label, None, size, f"{resize.op_type} {resize.name!r}: {setting}", kind, nodes)]
    if factor is None:
        problem = f"{resize.op_type} {resize.name!r}: its scale is unknown (not a constant, and its sizes unknown)"
        if size is None:
            problem += f"; {UNKNOWN_SIZE}"
        return [OnnxLayer(label, None, size, problem, kind, nodes)]
    if isinstance(factor, str):
        return [OnnxLayer(label, None, size, f"{resize.op_type} {resize.name!r}: {factor}", kind, nodes)]
    ((name, values),) = factor.items()
    if len(values) != rank:
        problem = f"{resize.op_type} {resize.name!r} resizes {len(values)} axes; Conv {label!r} has {rank}"
        return [OnnxLayer(label, None, size, problem, kind, nodes)]
    integer = name == "scale" and all(float(v).is_integer() for v in values)
    settings = resize_table.spec_settings(setting, integer)
    try:
        spec = ResizeSpec(c_in, c_conv, kernel_size=tuple(window), use_bias=use_bias, **factor, **conv, **settings)
    except ValueError as error:
        return [OnnxLayer(label, None, size, f"Conv {label!r}: {error}", kind, nodes)]
    return [judged(label, spec, size, kind, nodes)]


def _resize_method(node: onnx.NodeProto) -> Interpolation | str:
    """The settings of a ``Resize`` (or deprecated ``Upsample``) node, else ``"no spec: ..."``."""
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attributes(node).items()}
    mode = attrs.get("mode", "nearest")
    if node.op_type == "Upsample":  # deprecated: asymmetric coordinates, nearest rounds down
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    try:
        return Interpolation(
            mode,
            attrs.get("coordinate_transformation_mode", "half_pixel"),
            attrs.get("nearest_mode", "round_prefer_floor"),
            float(attrs.get("cubic_coeff_a", -0.75)),
            bool(attrs.get("exclude_outside", 0)),
        )
    except (TypeError, ValueError) as error:
        return f"no spec: {error}"


def _resize_factor(node: onnx.NodeProto, graph: Graph) -> dict[str, Any] | str | None:
    """The :class:`ResizeSpec` argument of a ``Resize`` (or ``Upsample``) node: ``{"scale": ...}`` with the integer
    ratio of its input and output shapes (what exporters that write ``sizes`` for ``scale_factor=r`` mean; the
    same numbers at that size), else from constant ``scales``, else ``{"size": ...}`` from constant ``sizes``; a
    message when the batch or channels are resized or nothing says what the factor is; ``None`` when unknown."""
    before, after = spatial(graph.shapes.get(node.input[0])), spatial(graph.shapes.get(node.output[0]))
    if before is not None and after is not None and len(before) == len(after):
        ratios = tuple(n / m for n, m in zip(after, before, strict=True))
        if all(r == int(r) and r >= 1 for r in ratios):
            return {"scale": tuple(int(r) for r in ratios)}
    scales = _constant_values(node, 1 if node.op_type == "Upsample" else 2, graph)
    sizes = _constant_sizes(node, graph) if node.op_type == "Resize" else None
    for name, values in (("scale", scales), ("size", sizes)):
        if values is not None and len(values) - 2 in SPATIAL_DIMS:
            if name == "scale" and values[:2] != [1.0, 1.0]:
                return f"scales {values} resize the batch or channels (a spec resizes the spatial axes only)"
            return {name: tuple(int(v) if name == "size" else v for v in values[2:])}
    if before is not None and after is not None:
        return f"its scales and sizes are not constants, and its shapes {before} -> {after} have no integer ratio"
    return None


def _constant_sizes(node: onnx.NodeProto, graph: Graph) -> list[float] | None:
    """A ``Resize``'s ``sizes`` when constant, or when a ``Concat`` of the input's batch and channels (from ``Shape``,
    as upsample writes them) and constant spatial sizes; ``None`` otherwise."""
    constant = _constant_values(node, 3, graph)
    producer = graph.producers.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if constant is not None or producer is None or producer.op_type != "Concat" or len(producer.input) != 2:
        return constant
    leading = graph.producers.get(producer.input[0])
    spatial_sizes = _constant_values(producer, 1, graph)
    if leading is None or leading.op_type != "Slice" or spatial_sizes is None:
        return None
    return [1.0, 1.0, *spatial_sizes]  # batch and channels kept


def _constant_values(node: onnx.NodeProto, index: int, graph: Graph) -> list[float] | None:
    """Input ``index`` of ``node`` when an initializer or ``Constant`` node holds it."""
    if len(node.input) <= index or not node.input[index]:
        return None
    name = node.input[index]
    producer = graph.producers.get(name)
    if producer is not None and producer.op_type == "Constant" and producer.attribute:
        return [float(v) for v in numpy_helper.to_array(producer.attribute[0].t).ravel()]
    value = graph.constants.get(name)
    return None if value is None else [float(v) for v in value.ravel()]


def dense_pattern(node: onnx.NodeProto, label: str, graph: Graph) -> list[OnnxLayer]:
    """``Gemm``/``MatMul`` (+ ``Add``) + ``Reshape`` from a 1x1 map or a flat vector to an ``H x W`` map."""
    nodes, out = [node.name], node.output[0]
    use_bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
    user = graph.only_user(out)
    if user is not None and user.op_type == "Add":
        use_bias, out = True, user.output[0]
        nodes.append(user.name)
        user = graph.only_user(out)
    reads, weight = graph.shapes.get(node.input[0]), graph.shapes.get(node.input[1])
    if user is None or user.op_type != "Reshape" or reads is None or len(reads) != 2 or weight is None:
        return []
    target = graph.shapes.get(user.output[0])
    if target is None or len(target) != 4:
        return []
    nodes.append(user.name)
    source = graph.producers.get(node.input[0])
    size: Axes | None = (1, 1)  # a vector no reshape made: as a 1x1 map
    if source is not None and source.op_type in ("Reshape", "Flatten"):
        flattened = graph.shapes.get(source.input[0])
        size = spatial(flattened) if flattened is not None and len(flattened) == 4 else None
        if flattened is not None and len(flattened) == 2:
            size = (1, 1)
        elif size is not None and size != (1, 1):
            return []  # a fully connected layer over a flattened map: no upsampler
        nodes.insert(0, source.name)
    transposed_b = node.op_type == "Gemm" and attributes(node).get("transB", 0)
    c_in, features = (weight[1], weight[0]) if transposed_b else (weight[0], weight[1])
    channels, height, width = target[1:]
    if (height, width) == (1, 1):
        return []  # to a 1x1 map: no upsampling
    if None in (c_in, channels, height, width):
        problem = f"a dense projection ({' + '.join(nodes)}) to a map of unknown size or channels {target[1:]}"
        return [OnnxLayer(label, None, size, problem, "dense", tuple(nodes))]
    if size is None:
        problem = "a dense projection from a flattened map of unknown size (shape inference cannot follow it)"
        return [OnnxLayer(label, None, None, problem, "dense", tuple(nodes))]
    assert c_in is not None and channels is not None and height is not None and width is not None
    if features != channels * height * width:
        return []
    spec = UpsampleSpec(c_in, channels, kernel_size=(height, width), stride=1, use_bias=use_bias)
    return [judged(label, spec, size, "dense", tuple(nodes))]
