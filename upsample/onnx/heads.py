"""A head (``HeadSpec``) as ONNX in inference mode: each stage through its own kind's
emitter (residual included), then the norm and the activation :class:`~upsample.HeadSpec` puts after it.

Everything is written from operators that have kept their form since opset 13, as
:mod:`upsample.head_reference` computes it: BatchNorm as ``BatchNormalization`` with the running statistics;
GroupNorm as ``Reshape`` to ``(N, G, C/G*H*W)``, mean and biased variance by ``ReduceMean``, ``Reshape``
back, per-channel scale and offset (opset 18's ``GroupNormalization`` had per-group scales until opset 21);
GELU from ``Erf`` or ``Tanh`` (the ``Gelu`` operator exists only from opset 20).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from upsample.arguments import Axes
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights, NormWeights
from upsample.onnx.export import GraphBuilder, emit_layer

GELU_TANH_CUBIC = 0.044715
"""The cubic coefficient of GELU's tanh approximation (Hendrycks & Gimpel 2016)."""
REDUCE_AXES_AS_INPUT_OPSET = 18
"""From opset 18 ``ReduceMean`` takes its axes as an input instead of an attribute."""


def emit_head(spec: HeadSpec, weights: HeadWeights, size: Axes | None, graph: GraphBuilder, x: str) -> str:
    """Stage ``i`` at ``spec.stage_sizes(size)[i]`` (every stage dynamic when ``size`` is ``None``), then its
    norm (if ``spec.normed(i)``) and activation."""
    sizes: Sequence[Axes | None] = [None] * len(spec.stages) if size is None else spec.stage_sizes(size)
    y = x
    for i, (stage, stage_weights, norm) in enumerate(zip(spec.stages, weights.stages, weights.norms, strict=True)):
        y = emit_layer(stage, stage_weights, sizes[i], graph, y)
        if spec.normed(i):
            assert spec.norm is not None and norm is not None  # HeadWeights.check ran
            y = _emit_norm(spec.norm, norm, stage.out_channels, spec.spatial_dims, graph, y)
        y = _emit_activation(spec.activation_after(i), graph, y)
    return y


def _emit_norm(settings: Norm, norm: NormWeights, channels: int, rank: int, graph: GraphBuilder, x: str) -> str:
    """BatchNorm with the running statistics; GroupNorm with the statistics of each sample's groups, instance
    norm as GroupNorm with a group per channel; layer norm over the channels of each pixel (NCHW: the values
    reshaped to ``(B, C, pixels)`` and transposed to ``(B, pixels, C)``); any number of spatial axes (``rank``)."""
    if settings.kind == "batch":
        arrays = [graph.constant(name, array) for name, array in zip(NormWeights.NAMES, norm.arrays(), strict=True)]
        return graph.add("BatchNormalization", [x, *arrays], epsilon=settings.epsilon)
    if settings.kind == "layer":
        flat = graph.add("Reshape", [x, graph.constant("shape", [0, channels, -1], np.int64)])
        grouped = graph.add("Transpose", [flat], perm=[0, 2, 1])
    else:
        groups = channels if settings.kind == "instance" else settings.groups
        grouped = graph.add("Reshape", [x, graph.constant("shape", [0, groups, -1], np.int64)])
    centred = graph.add("Sub", [grouped, _reduce_mean(graph, grouped)])
    variance = _reduce_mean(graph, graph.add("Mul", [centred, centred]))  # biased, as every framework's forward
    deviation = graph.add("Sqrt", [graph.add("Add", [variance, graph.constant("epsilon", settings.epsilon)])])
    normalised = graph.add("Div", [centred, deviation])
    if settings.kind == "layer":
        normalised = graph.add("Transpose", [normalised], perm=[0, 2, 1])
    x_shape = graph.add("Shape", [x])
    y = graph.add("Reshape", [normalised, x_shape])
    per_channel = (channels, *(1,) * rank)
    y = graph.add("Mul", [y, graph.constant("scale", np.asarray(norm.scale).reshape(per_channel))])
    return graph.add("Add", [y, graph.constant("offset", np.asarray(norm.offset).reshape(per_channel))])


def _reduce_mean(graph: GraphBuilder, x: str) -> str:
    """Mean over the last axis, kept (axes as an attribute before opset 18, an input from it)."""
    if graph.opset >= REDUCE_AXES_AS_INPUT_OPSET:
        return graph.add("ReduceMean", [x, graph.constant("axes", [-1], np.int64)], keepdims=1)
    return graph.add("ReduceMean", [x], axes=[-1], keepdims=1)


def _emit_activation(activation: Activation | None, graph: GraphBuilder, x: str) -> str:
    """The activation's ONNX form; GELU written out (exact: ``x * Phi(x)`` by ``Erf``; else the tanh form)."""
    if activation is None:
        return x
    simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
    if activation.kind in simple:
        return graph.add(simple[activation.kind], [x])
    if activation.kind == "silu":  # x * sigmoid(x), in ops every opset has
        return graph.add("Mul", [x, graph.add("Sigmoid", [x])])
    if activation.kind == "elu":
        return graph.add("Elu", [x], alpha=activation.alpha)
    if activation.kind == "leaky_relu":
        return graph.add("LeakyRelu", [x], alpha=activation.slope)
    if activation.approximate:
        cube = graph.add("Mul", [x, graph.add("Mul", [x, x])])
        inner = graph.add("Add", [x, graph.add("Mul", [cube, graph.constant("cubic", GELU_TANH_CUBIC)])])
        gate = graph.add("Tanh", [graph.add("Mul", [inner, graph.constant("sqrt_2_over_pi", math.sqrt(2 / math.pi))])])
    else:
        gate = graph.add("Erf", [graph.add("Mul", [x, graph.constant("inv_sqrt_2", 1 / math.sqrt(2))])])
    half_x = graph.add("Mul", [x, graph.constant("half", 0.5)])
    return graph.add("Mul", [half_x, graph.add("Add", [gate, graph.constant("one", 1.0)])])
