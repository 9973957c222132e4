"""The ``upsample`` command's ONNX side: ``export`` (a spec, weights or head file as a standalone ONNX model)
and ``inspect MODEL.onnx`` (each upsampling layer as a spec with its coverage verdict)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from upsample import cli_inputs as inputs
from upsample import cli_output as output
from upsample.arguments import axis_names, size_text
from upsample.checks import layout_name
from upsample.cli_inputs import UsageError
from upsample.messages import shown


def onnx_module() -> Any:
    """:mod:`upsample.onnx` with ``onnx`` imported, or a :class:`UsageError` naming the extra to install."""
    try:
        import upsample.onnx as onnx_module

        onnx_module.to_onnx  # noqa: B018  (imports onnx itself)
    except ImportError as error:
        raise UsageError(f'{error}; install it with: pip install "upsample[onnx]"') from None
    return onnx_module


def cmd_export(args: argparse.Namespace) -> int:
    """A spec, weights or head file as a standalone ONNX model (weights: the file's, or ``init_weights(seed)``;
    a head in inference mode, normalising with its running statistics). Height and width are dynamic where
    the spec allows (``--fixed-size``: fixed to the input size)."""
    from upsample.weights import init_weights

    inputs.writable_path(args.onnx, "--onnx", [".onnx"])
    loaded = inputs.read_spec_file(args.spec)
    size, size_from = inputs.input_size(args.input_size, loaded, loaded.spec)
    weights = loaded.weights if loaded.weights is not None else init_weights(loaded.spec, seed=args.seed)
    module = onnx_module()
    dynamic_spatial = False if args.fixed_size else None
    model = module.to_onnx(
        loaded.spec, weights, args.onnx, input_size=size, opset=args.opset, dynamic_spatial=dynamic_spatial
    )
    made = "its weights" if loaded.weights is not None else f"init_weights(seed={args.seed})"
    mode = ", inference mode (running statistics)" if loaded.is_head else ""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dims[2].dim_param:
        names = axis_names(loaded.spec.spatial_dims)
        axes = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        shape = f"dynamic {axes} (--fixed-size fixes them to {size_text(size)} ({size_from}))"
    else:
        from upsample.onnx.export import dynamic_blocker

        blocker = None if args.fixed_size else dynamic_blocker(loaded.spec)
        shape = f"input {size_text(size)} ({size_from}; fixed: {blocker or '--fixed-size'})"
    layout = layout_name("NCHW", loaded.spec.spatial_dims)
    print(f"saved {args.onnx}: {layout}, dynamic batch, {shape}, {made}{mode}", file=sys.stderr)
    return 0


KIND_NAMES = {
    "transposed": "transposed convolution",
    "subpixel": "sub-pixel convolution",
    "resize": "resize-convolution",
    "dense": "dense projection",
}
"""How ``inspect MODEL.onnx`` names each kind of layer it finds."""


def inspect_onnx(args: argparse.Namespace) -> int:
    """Every upsampling layer of an ONNX model (transposed, sub-pixel, resize-convolution, dense projection)
    as a spec with its coverage verdict at its own input size, which shape inference finds through the graph
    (``--input-size``: the model input's size when it is symbolic); an unknown size is said, not assumed."""
    inputs.refuse_overridden(args, inputs.SPEC_FLAGS, args.spec)
    if args.png:
        raise UsageError("--png draws one layer: inspect an ONNX model's nodes one by one from their spec JSON")
    if not os.path.isfile(args.spec):
        raise UsageError(
            f"ONNX model {shown(args.spec)} {'is a directory' if os.path.isdir(args.spec) else 'does not exist'}"
        )
    given = args.input_size  # an int, or one per axis: describe reads the model's rank
    try:
        layers = onnx_module().describe(args.spec, input_size=given)
    except ValueError as error:  # --input-size against a declared size
        raise UsageError(f"--input-size: {error}") from None
    size_from = "shape inference" + ("" if given is None else " from --input-size")
    found = []
    for layer in layers:
        entry: dict[str, Any] = {"node": layer.name, "kind": layer.kind, "nodes": list(layer.nodes)}
        entry["problem"] = layer.problem
        if layer.spec is not None and layer.problem is None:
            if layer.input_size is None:
                entry |= {"spec": layer.spec.to_dict(), "input_size": None, "verdict": None}
            else:
                entry.update(output.summary(layer.spec, layer.input_size, size_from))
        found.append(entry)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"{args.spec}: no upsampling layers ({', '.join(KIND_NAMES.values())})")
    for entry in found:
        nodes = f" ({' + '.join(entry['nodes'])})" if len(entry["nodes"]) > 1 else ""
        print(f"{KIND_NAMES[entry['kind']]} {entry['node']}{nodes}")
        if entry["problem"]:
            print(f"  not a spec: {entry['problem']}")
        elif entry["input_size"] is None:
            print(f"  spec: {entry['spec']}")
            print("  input size unknown: give --input-size (the model input's spatial size)")
        else:
            output.print_table(entry)
        print()
    return 0


def add_export_command(commands: Any, spec_help: str) -> None:
    """The ``export`` subcommand's arguments."""
    export = commands.add_parser("export", help="write a spec, weights or head file as a standalone ONNX model")
    export.add_argument("spec", help=spec_help)
    export.add_argument(
        "-o", "--onnx", metavar="PATH", required=True, help="the .onnx file to write (needs upsample[onnx])"
    )
    export.add_argument(
        "--input-size", type=inputs.size_or_pair, help="input size where it is fixed (default: the file's, or 1)"
    )
    export.add_argument(
        "--fixed-size",
        action="store_true",
        help="fix the input's height and width to --input-size (default: dynamic where the spec allows)",
    )
    export.add_argument("--opset", type=inputs.positive_int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--seed", type=inputs.non_negative_int, default=0, help="weights seed for a spec file")
    export.set_defaults(run=cmd_export)
