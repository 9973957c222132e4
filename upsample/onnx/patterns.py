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
    settings, scale = _resize_method(resize), _resize_scale(resize, graph)
    if isinstance(settings, str):
        return [OnnxLayer(label, None, size, f"{resize.op_type} {resize.name!r}: {settings}", kind, nodes)]
    if scale is None:
        problem = f"{resize.op_type} {resize.name!r}: its scale is unknown (not a constant, and its sizes unknown)"
        if size is None:
            problem += f"; {UNKNOWN_SIZE}"
        return [OnnxLayer(label, None, size, problem, kind, nodes)]
    if isinstance(scale, str):
        return [OnnxLayer(label, None, size, f"{resize.op_type} {resize.name!r}: {scale}", kind, nodes)]
    if len(scale) != rank:
        problem = f"{resize.op_type} {resize.name!r} scales {len(scale)} axes; Conv {label!r} has {rank}"
        return [OnnxLayer(label, None, size, problem, kind, nodes)]
    try:
        spec = ResizeSpec(c_in, c_conv, scale, kernel_size=tuple(window), use_bias=use_bias, **conv, **settings)
    except ValueError as error:
        return [OnnxLayer(label, None, size, f"Conv {label!r}: {error}", kind, nodes)]
    return [judged(label, spec, size, kind, nodes)]


def _resize_method(node: onnx.NodeProto) -> dict[str, Any] | str:
    """The :class:`ResizeSpec` settings of a ``Resize`` (or deprecated ``Upsample``) node, in their simplest form
    for an integer scale, else ``"no spec: ..."``."""
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attributes(node).items()}
    mode = attrs.get("mode", "nearest")
    if node.op_type == "Upsample":  # deprecated: asymmetric coordinates, nearest rounds down
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    try:
        setting = Interpolation(
            mode,
            attrs.get("coordinate_transformation_mode", "half_pixel"),
            attrs.get("nearest_mode", "round_prefer_floor"),
            float(attrs.get("cubic_coeff_a", -0.75)),
            bool(attrs.get("exclude_outside", 0)),
        )
    except (TypeError, ValueError) as error:
        return f"no spec: {error}"
    return resize_table.spec_settings(setting)


def _resize_scale(node: onnx.NodeProto, graph: Graph) -> Axes | str | None:
    """The integer scale per spatial axis (``(r_h, r_w)`` in 2-D) from the input and output sizes, else from
    constant scales; a message when the scale is not an integer; ``None`` when unknown."""
    before, after = spatial(graph.shapes.get(node.input[0])), spatial(graph.shapes.get(node.output[0]))
    if before is not None and after is not None and len(before) == len(after):
        ratios = tuple(n / m for n, m in zip(after, before, strict=True))
    else:
        index = 1 if node.op_type == "Upsample" else 2
        values = _constant_values(node, index, graph)
        if values is None or len(values) - 2 not in SPATIAL_DIMS:
            return None
        ratios = tuple(float(v) for v in values[2:])
    if any(r != int(r) or r < 1 for r in ratios):
        return f"scale {ratios} is not an integer (a spec resizes by an integer factor)"
    return tuple(int(r) for r in ratios)


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
