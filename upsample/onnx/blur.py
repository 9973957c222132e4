"""A spec's blur (:class:`~upsample.Blur`) in ONNX: per spatial axis a depthwise ``Conv`` of the axis's taps, its
zero rows as the ``Conv``'s ``pads``, or a ``Pad`` of mode ``edge`` first for a replicating blur; written after a
layer (:func:`emit_blur`) and read back after one (:func:`read_blur`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from upsample.blur import Blur
from upsample.onnx.patterns import Graph, attributes

if TYPE_CHECKING:
    from upsample.onnx.export import GraphBuilder


def emit_blur(blur: Blur, channels: int, graph: GraphBuilder, x: str) -> str:
    """``x`` (``(N, C, *spatial)``, ``channels`` channels) blurred one spatial axis after the other."""
    rank = len(blur.taps)
    for axis, (taps, (before, after)) in enumerate(zip(blur.weights, blur.padding, strict=True)):
        shape = [1] * rank
        shape[axis] = len(taps)
        kernel = np.broadcast_to(np.asarray(taps).reshape(1, 1, *shape), (channels, 1, *shape))
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = before, after
        if blur.mode == "replicate":
            edge = [0, 0, *pads[:rank], 0, 0, *pads[rank:]]
            x = graph.add("Pad", [x, graph.constant("pads", edge, np.int64)], mode="edge")
            pads = [0] * (2 * rank)
        x = graph.add("Conv", [x, graph.constant("blur", kernel)], kernel_shape=shape, pads=pads, group=channels)
    return x


def read_blur(output: str, channels: int, rank: int, graph: Graph) -> tuple[Blur, tuple[str, ...]] | None:
    """The blur :func:`emit_blur` writes after the tensor ``output``, and its nodes' names; ``None`` where the nodes
    after it are not one (a gain reads back folded into the first axis's taps)."""
    taps: list[list[float]] = []
    pads: list[tuple[int, int]] = []
    modes: set[str] = set()
    nodes: list[str] = []
    name = output
    for axis in range(rank):
        node = graph.only_user(name)
        edge = None
        if node is not None and node.op_type == "Pad" and attributes(node).get("mode") in (b"edge", "edge"):
            edge = graph.constants.get(node.input[1]) if len(node.input) > 1 else None
            nodes.append(node.name)
            node = graph.only_user(node.output[0])
        found = _axis_filter(node, channels, rank, axis, graph)
        if found is None:
            return None
        assert node is not None
        filter_taps, conv_pads = found
        if edge is not None:
            rows = [int(v) for v in edge]  # (N, C, *spatial) begins, then ends
            if set(rows[:2] + rows[2 + rank : 4 + rank]) != {0} or set(conv_pads) != {0}:
                return None
            conv_pads = rows[2 : 2 + rank] + rows[4 + rank :]
        before, after = conv_pads[axis], conv_pads[rank + axis]
        if set(conv_pads[:axis] + conv_pads[axis + 1 : rank + axis] + conv_pads[rank + axis + 1 :]) - {0}:
            return None
        taps.append(filter_taps)
        pads.append((before, after))
        modes.add("zeros" if edge is None else "replicate")
        nodes.append(node.name)
        name = node.output[0]
    if len(modes) != 1:
        return None
    try:
        return Blur(taps, pads, modes.pop()), tuple(nodes)
    except ValueError:
        return None


def _axis_filter(
    node: onnx.NodeProto | None, channels: int, rank: int, axis: int, graph: Graph
) -> tuple[list[float], list[int]] | None:
    """A depthwise ``Conv`` of one filter along ``axis``, the same for every channel, no bias: its taps and pads."""
    if node is None or node.op_type != "Conv" or len(node.input) != 2:
        return None
    attrs = attributes(node)
    weight = graph.constants.get(node.input[1])
    ones = [1] * rank
    if (
        weight is None
        or attrs.get("group") != channels
        or weight.shape[:2] != (channels, 1)
        or list(attrs.get("strides", ones)) != ones
        or list(attrs.get("dilations", ones)) != ones
        or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")
    ):
        return None
    if any(length != 1 for a, length in enumerate(weight.shape[2:]) if a != axis) or not np.all(weight == weight[:1]):
        return None
    return [float(t) for t in weight[0, 0].reshape(-1)], list(attrs.get("pads", [0] * 2 * rank))
