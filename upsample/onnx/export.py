"""A spec and its weights as a standalone ONNX model, built with ``onnx.helper``.

One emitter per spec kind writes the layer's main path into a :class:`GraphBuilder`; the residual skip,
shared by every kind, is added after it: identity or a bias-free 1x1 ``Conv`` (projection), brought to
the output size by ``Resize`` nearest (``asymmetric``, ``floor``) when the output is an integer multiple
of the input for every size, else by constant ``Gather`` indices from :func:`upsample.geometry.nearest_gather`
(``Resize``'s coordinate modes round differently from the canonical index for non-integer scales).

The spatial axes are dynamic (symbolic ``height``/``width``) unless a residual's ratio is not an integer
(:func:`dynamic_blocker`); emitters then get ``size=None``. A head (``HeadSpec``) chains
these per stage with its norms and activations in inference mode (:mod:`upsample.onnx.heads`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from upsample import geometry, kinds
from upsample.arguments import Axes, IntOrAxes, as_axes, axis_names, size_text
from upsample.head import KIND as HEAD_KIND
from upsample.head_weights import HeadWeights
from upsample.messages import shown
from upsample.onnx import padding
from upsample.onnx.blur import emit_blur
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

DEFAULT_OPSET = 17
"""Opset of exported models: every operator used here has had its current form since opset 13 at the
latest, and 17 is what TensorRT 8.6+, onnxruntime >= 1.13 and mobile runtimes read."""
MIN_OPSET = 13
INPUT, OUTPUT = "x", "y"


class GraphBuilder:
    """Nodes and initializers of one graph, with unique names, for ``opset`` (some operators changed form)."""

    def __init__(self, opset: int = DEFAULT_OPSET) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint: str, array: Any, dtype: Any = np.float32) -> str:
        """An initializer holding ``array`` as ``dtype``; returns its name."""
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def add(self, op: str, inputs: list[str], **attributes: Any) -> str:
        """A node ``op(*inputs)`` with one output; returns the output's name."""
        output = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


Emitter = Callable[[Any, Any, Axes | None, GraphBuilder, str], str]
"""``emit(spec, weights, input_size, graph, x) -> y``: the layer without its residual, channels first
``(N, C, *spatial)``; ``input_size`` ``None`` for a model with dynamic spatial axes. Each kind's emitter is
named by its row of :data:`upsample.kinds.KINDS`."""


def _torch_kernel(kernel: Any, transposed: bool) -> np.ndarray:
    """A canonical kernel in ONNX's layout: ``(C_in, C_out // G, *k)`` for ``ConvTranspose``, ``(C_conv, C_in // G,
    *k)`` for ``Conv``."""
    kernel = np.asarray(kernel)
    rank = kernel.ndim - 2
    channels = (rank, rank + 1) if transposed else (rank + 1, rank)
    return kernel.transpose(*channels, *range(rank))


def _per_channel(values: Any, rank: int) -> np.ndarray:
    """A ``(C,)`` array shaped to broadcast over ``(N, C, *spatial)``."""
    return np.asarray(values).reshape(-1, *(1,) * rank)


def _groups_and_dilation(spec: Any) -> dict[str, Any]:
    """``group`` and ``dilations`` attributes, each only when not the default (so ungrouped, undilated
    layers export the graph they always did)."""
    attributes: dict[str, Any] = {}
    if spec.groups != 1:
        attributes["group"] = spec.groups
    if set(spec.dilation) != {1}:
        attributes["dilations"] = list(spec.dilation)
    return attributes


def emit_transposed(spec: UpsampleSpec, weights: Weights, size: Axes | None, graph: GraphBuilder, x: str) -> str:
    """``ConvTranspose`` with the non-negative part of the crops as ``pads``, then ``Slice`` (only when a
    window misses the full output), ``Pad`` for rows a negative crop adds, then the bias (so added rows
    get it too: docs/conventions.md). Dynamic: that ``Slice`` comes after the ``Pad``, its ends counted
    from the end (:func:`upsample.onnx.padding.export_axis_dynamic`). A dilated kernel's pads are those of
    its extent (ONNX's output length has ``(k - 1) * d + 1`` where an undilated one has ``k``)."""
    extent = spec.extent
    axes = [
        padding.export_axis_dynamic(extent[a], spec.stride[a], spec.crops[a])
        if size is None
        else padding.export_axis(size[a], extent[a], spec.stride[a], spec.crops[a])
        for a in range(spec.spatial_dims)
    ]
    adds_rows = any(axis.rows != (0, 0) for axis in axes)
    inputs = [x, graph.constant("kernel", _torch_kernel(weights.kernel, transposed=True))]
    if spec.use_bias and not adds_rows:
        inputs.append(graph.constant("bias", weights.bias))
    y = graph.add(
        "ConvTranspose",
        inputs,
        kernel_shape=list(spec.kernel_size),
        strides=list(spec.stride),
        pads=padding.onnx_pads([axis.pads for axis in axes]),
        **_groups_and_dilation(spec),
    )
    sliced = {a + 2: axis.slice for a, axis in enumerate(axes) if axis.slice is not None}
    if sliced and size is not None:
        y = _slice(graph, y, sliced)
    if adds_rows:
        y = graph.add(
            "Pad",
            [y, graph.constant("pads", padding.onnx_pads([(0, 0), (0, 0), *(axis.rows for axis in axes)]), np.int64)],
        )
    if sliced and size is None:  # dynamic: rows first, then the window (ends counted from the end)
        y = _slice(graph, y, sliced)
    if adds_rows and spec.use_bias:
        y = graph.add("Add", [y, graph.constant("bias", _per_channel(weights.bias, spec.spatial_dims))])
    return y


def _slice(graph: GraphBuilder, x: str, windows: dict[int, Any]) -> str:
    """``Slice`` keeping ``[start, stop)`` on each axis of ``windows`` (``stop`` ``None``: to the end)."""
    last = np.iinfo(np.int64).max
    starts = graph.constant("starts", [window[0] for window in windows.values()], np.int64)
    ends = graph.constant("ends", [last if window[1] is None else window[1] for window in windows.values()], np.int64)
    return graph.add("Slice", [x, starts, ends, graph.constant("axes", list(windows), np.int64)])


def _same_conv(spec: Any, weights: Weights, graph: GraphBuilder, x: str) -> str:
    """The stride-1 "same" ``Conv`` of the sub-pixel and resize kinds: canonical ``(*k, C_in // G, C_conv)`` kernel
    as ONNX's ``(C_conv, C_in // G, *k)``, zero rows ``spec.padding`` per axis (the "same" padding of the dilated
    extent), with ``group`` and ``dilations`` when not 1."""
    inputs = [x, graph.constant("kernel", _torch_kernel(weights.kernel, transposed=False))]
    if spec.use_bias:
        inputs.append(graph.constant("bias", weights.bias))
    pads = padding.onnx_pads(spec.padding)
    return graph.add("Conv", inputs, kernel_shape=list(spec.kernel_size), pads=pads, **_groups_and_dilation(spec))


def emit_subpixel(spec: Any, weights: Weights, size: Axes | None, graph: GraphBuilder, x: str) -> str:
    """``Conv``, then the CRD pixel shuffle: ``DepthToSpace`` mode CRD for a square 2-D scale, else the same
    permutation as ``Reshape`` -> ``Transpose`` -> ``Reshape`` (``DepthToSpace`` is 2-D with one block size),
    with the shapes from ``Shape`` -> ``Concat`` when the size is dynamic."""
    y = _same_conv(spec, weights, graph, x)
    scale, channels, rank = list(spec.scale), spec.out_channels, spec.spatial_dims
    if rank == 2 and scale[0] == scale[1]:
        return graph.add("DepthToSpace", [y], blocksize=scale[0], mode="CRD")
    if size is None:
        shape = graph.add("Shape", [y])
        spatial = graph.constant("hw" if rank == 2 else "spatial", list(range(2, 2 + rank)), np.int64)  # 2-D: as before
        lengths = graph.add("Gather", [shape, spatial], axis=0)
        split = graph.add("Concat", [graph.constant("shape", [0, channels, *scale], np.int64), lengths], axis=0)
        scaled = graph.add("Mul", [lengths, graph.constant("scale", scale, np.int64)])
        merged = graph.add("Concat", [graph.constant("shape", [0, channels], np.int64), scaled], axis=0)
    else:
        split = graph.constant("shape", [0, channels, *scale, *size], np.int64)  # 0: keep the (dynamic) batch
        merged = graph.constant("shape", [0, channels, *(n * r for n, r in zip(size, scale, strict=True))], np.int64)
    # (N, C, *r, *size) -> (N, C, size_1, r_1, size_2, r_2, ...)
    perm = [0, 1, *(i for a in range(rank) for i in (2 + rank + a, 2 + a))]
    y = graph.add("Transpose", [graph.add("Reshape", [y, split])], perm=perm)
    return graph.add("Reshape", [y, merged])


def emit_resize(spec: Any, weights: Weights, size: Axes | None, graph: GraphBuilder, x: str) -> str:
    """``Resize`` with the spec's own settings (they are ONNX's: :mod:`upsample.interpolation`; those its method does
    not read left out) by its ``scales``, or to its ``sizes`` (batch and channels from ``Shape``), then ``Conv`` (none
    for a resize alone)."""
    if spec.method == "cubic" and spec.spatial_dims != 2:
        raise ValueError(
            f"a {spec.spatial_dims}-D cubic resize has no ONNX export here: onnxruntime's Resize computes cubic on two "
            f"axes only (use method='linear' or 'nearest', or a 2-D spec), got {spec}"
        )
    integer = spec.integer_scale is not None
    setting = spec.interpolation.for_integer_scale() if integer else spec.interpolation.simplest()
    modes: dict[str, Any] = {"mode": setting.method, "coordinate_transformation_mode": setting.coordinates}
    if integer and setting.repeats():  # written as before the settings existed: floor(dst / r)
        modes.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif setting.method == "nearest":
        modes["nearest_mode"] = setting.nearest_mode
    elif setting.method == "cubic":
        modes.update(cubic_coeff_a=setting.cubic_a, exclude_outside=int(setting.exclude_outside))
    if spec.size is not None:
        batch_and_channels = graph.add("Slice", [graph.add("Shape", [x]), *_int64s(graph, [0], [2])])
        sizes = graph.add("Concat", [batch_and_channels, graph.constant("sizes", list(spec.size), np.int64)], axis=0)
        return _then_conv(spec, weights, graph, graph.add("Resize", [x, "", "", sizes], **modes))
    inexact = [factor for factor in spec.scale if float(np.float32(factor)) != factor]
    if inexact:
        raise ValueError(
            f"ONNX's Resize scales are float32, and scale={shown(spec.scale)} is not: {inexact[0]!r} would become "
            f"{float(np.float32(inexact[0]))!r}; give a factor float32 holds exactly (1.5, 1.25, 2.75, ...) or a size"
        )
    scales = graph.constant("scales", [1.0, 1.0, *spec.scale], np.float32)
    return _then_conv(spec, weights, graph, graph.add("Resize", [x, "", scales], **modes))


def _then_conv(spec: Any, weights: Weights, graph: GraphBuilder, resized: str) -> str:
    """The spec's ``Conv`` on the resized tensor, or the resize itself for a resize alone (``kernel_size=None``)."""
    return resized if spec.resize_only else _same_conv(spec, weights, graph, resized)


def _int64s(graph: GraphBuilder, *values: list[int]) -> list[str]:
    """Each list of ``values`` as an int64 initializer (``Slice``'s ``starts`` and ``ends``)."""
    return [graph.constant("index", v, np.int64) for v in values]


def emit_layer(spec: Any, weights: Any, size: Axes | None, graph: GraphBuilder, x: str) -> str:
    """Any spec kind's emitter (its row of :data:`upsample.kinds.KINDS`), then the blur and the residual of a single
    layer that has them."""
    emit: Emitter = kinds.resolve(kinds.kind_of(spec).onnx)
    y = emit(spec, weights, size, graph, x)
    if getattr(spec, "blur", None) is not None:
        y = emit_blur(spec.blur, spec.out_channels, graph, y)
    if getattr(spec, "residual", None) is not None:
        y = _emit_residual(spec, weights, size, graph, x, y)
    return y


def residual_ratios(spec: Any) -> tuple[int | None, ...]:
    """Per axis, the integer ``n`` with output length ``n * i`` for every input length ``i`` (else ``None``)."""

    def axis_length(axis: int) -> Callable[[int], int]:
        return lambda length: int(spec.output_size(length)[axis])

    return tuple(geometry.integer_ratio(axis_length(a)) for a in range(spec.spatial_dims))


def dynamic_blocker(spec: Any) -> str | None:
    """Why ``spec`` cannot be exported with dynamic spatial axes, or ``None`` when it can: only a residual
    whose output is not an integer multiple of its input (e.g. ``2i + 1``) gathers size-dependent indices."""
    for i, stage in enumerate(getattr(spec, "stages", None) or [spec]):
        if getattr(stage, "residual", None) is None or None not in residual_ratios(stage):
            continue
        where = f"stages[{i}]'s" if hasattr(spec, "stages") else "the"
        return (
            f"{where} residual gathers size-dependent indices: its output is not an integer multiple of its input "
            f"for every size (input {size_text((4,) * stage.spatial_dims)} -> output {_shown_size(stage, 4)}, "
            f"{size_text((8,) * stage.spatial_dims)} -> {_shown_size(stage, 8)})"
        )
    return None


def _shown_size(spec: Any, length: int) -> str:
    """``HxW`` of ``spec``'s output for a ``length`` x ``length`` input, or ``'none'`` when it has none."""
    try:
        return size_text(spec.output_size(length))
    except ValueError:
        return "none"


def _emit_residual(spec: Any, weights: Weights, size: Axes | None, graph: GraphBuilder, x: str, y: str) -> str:
    """``y + nearest(skip(x))``; a length-1 axis broadcasts in ``Add`` and an identity gather is skipped;
    an integer ratio for every size is a ``Resize`` (``floor(dst / n)``, the canonical
    ``floor((dst + 0.5) * i / (n * i))``)."""
    skip = x
    if spec.residual == "projection":
        matrix = np.asarray(weights.skip).T.reshape(spec.out_channels, spec.in_channels, *(1,) * spec.spatial_dims)
        skip = graph.add("Conv", [x, graph.constant("skip", matrix)])
    if size is None:
        ratios = residual_ratios(spec)
        assert None not in ratios  # dynamic_blocker ran
        if set(ratios) != {1}:
            scales = graph.constant("scales", [1.0, 1.0, *ratios], np.float32)
            modes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
            skip = graph.add("Resize", [skip, "", scales], **modes)
        return graph.add("Add", [y, skip])
    for a, out_length in enumerate(spec.output_size(size)):
        indices = geometry.nearest_gather(size[a], out_length)
        if indices is not None:
            name = "rows" if a == spec.spatial_dims - 2 else "cols" if a == spec.spatial_dims - 1 else "planes"
            skip = graph.add("Gather", [skip, graph.constant(name, indices, np.int64)], axis=a + 2)
    return graph.add("Add", [y, skip])


def to_onnx(
    spec: Any,
    weights: Weights | HeadWeights,
    path: str | os.PathLike[str] | None = None,
    *,
    input_size: IntOrAxes | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_spatial: bool | None = None,
) -> onnx.ModelProto:
    """The layer (or head, in inference mode) as an ONNX model: input ``x`` ``(batch, C_in, *spatial)`` float32
    (``(batch, C_in, H, W)`` in 2-D) with a dynamic batch, output ``y`` ``(batch, C_out, *spatial')``. Written to
    ``path`` if given.

    ``dynamic_spatial``: ``None`` (default) makes the spatial axes symbolic (``height``, ``width``) wherever
    the spec allows, else fixes them to ``input_size`` (default: a head's own ``input_size``, else 1);
    ``True`` requires dynamic axes (``ValueError`` naming the reason when impossible); ``False`` fixes them.
    Only a residual whose output is not an integer multiple of its input for every size (e.g. ``2i + 1``)
    needs a fixed size: its gather indices depend on it (:func:`dynamic_blocker`).
    The model is checked with ``onnx.checker`` (shape inference included) before it is returned.
    """
    try:
        kind = kinds.kind_of(spec).name
    except TypeError:
        known = [row.name for row in kinds.KINDS]
        raise TypeError(
            f"spec must be one of the kinds {known} (an upsample spec), got {type(spec).__name__}"
        ) from None
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET}, got {opset!r}")
    wanted = HeadWeights if kind == HEAD_KIND else Weights
    if not isinstance(weights, wanted):
        raise TypeError(
            f"weights must be an upsample.{wanted.__name__} for a {type(spec).__name__}, got {type(weights).__name__}"
        )
    weights.check(spec)
    if dynamic_spatial not in (None, True, False):
        raise ValueError(f"dynamic_spatial must be None, True or False, got {shown(dynamic_spatial)}")
    if input_size is None:
        input_size = spec.input_size if kind == HEAD_KIND else 1
    size = as_axes("input_size", input_size, spec.spatial_dims, 1)
    out_size = spec.output_size(size)
    blocker = dynamic_blocker(spec) if dynamic_spatial is not False else None
    if dynamic_spatial and blocker:
        raise ValueError(f"dynamic_spatial=True is impossible for this {type(spec).__name__}: {blocker}")
    dynamic = dynamic_spatial is not False and blocker is None
    graph = GraphBuilder(opset)
    y = emit_layer(spec, weights, None if dynamic else size, graph, INPUT)
    graph.nodes.append(helper.make_node("Identity", [y], [OUTPUT], name=OUTPUT))
    names = axis_names(spec.spatial_dims)
    in_dims: list[Any] = list(names) if dynamic else list(size)
    out_dims: list[Any] = [f"out_{name}" for name in names] if dynamic else list(out_size)
    x_info = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", spec.in_channels, *in_dims])
    y_info = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", spec.out_channels, *out_dims])
    model = helper.make_model(
        helper.make_graph(graph.nodes, f"upsample_{kind}", [x_info], [y_info], graph.initializers),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="upsample",
    )
    props = {"upsample.spec": spec.to_json()}
    if not dynamic:
        props["upsample.input_size"] = size_text(size)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def export_file(
    source: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    *,
    input_size: IntOrAxes | None = None,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    dynamic_spatial: bool | None = None,
) -> tuple[Any, Weights]:
    """What ``upsample export SOURCE --onnx OUT`` does: ``source`` is a layer's or a head's weights
    ``.safetensors`` file (spec and trained weights) or a spec JSON file of any kind (then weights from
    ``init_weights(spec, seed)``); ``input_size`` and ``dynamic_spatial`` as in :func:`to_onnx`.
    Returns ``(spec, weights)`` as exported."""
    from upsample.head_weights import load_any
    from upsample.spec import load_spec
    from upsample.weights import init_weights

    where = os.fspath(source)
    if where.endswith(".safetensors"):
        spec, weights = load_any(where)
    else:
        try:
            with open(where, encoding="utf-8") as handle:
                spec = load_spec(handle.read())
        except OSError as error:
            raise ValueError(f"cannot read spec file {where!r}: {error.strerror}") from None
        weights = init_weights(spec, seed=seed)
    to_onnx(spec, weights, onnx_path, input_size=input_size, opset=opset, dynamic_spatial=dynamic_spatial)
    return spec, weights
