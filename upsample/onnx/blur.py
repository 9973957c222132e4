"""A spec's blur (:class:`~upsample.Blur`) in ONNX: per spatial axis a depthwise ``Conv`` of the axis's taps, its
zero rows as the ``Conv``'s ``pads``, or a ``Pad`` of mode ``edge`` first for a replicating blur."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from upsample.blur import Blur
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
