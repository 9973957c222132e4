"""The ``upsample`` command: plan a layer, inspect its coverage, check it everywhere, time it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from upsample import __version__, plans
from upsample import cli_inputs as inputs
from upsample.cli_inputs import UsageError
from upsample.messages import shown

MESSAGE_LIMIT = 400
"""Characters of an error line at most (values inside are already short; this bounds the rest)."""
SPEC_FLAGS = "mode channels out_channels kernel stride padding output_padding scale method residual no_bias".split()
"""``inspect``'s flags that describe a spec: refused together with a spec file."""
PLAN_FLAGS = ("mode", "channels", "size", "out_channels", "kernel", "residual", "method")
"""``check``'s flags that describe a spec: refused together with a spec file (``--input-size`` is not)."""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."


class _Parser(argparse.ArgumentParser):
    """argparse with one bounded error line (no usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def _summary(spec: Any, size: tuple[int, int], size_from: str) -> dict[str, Any]:
    report = spec.diagnose(size)
    return {
        "spec": spec.to_dict(),
        "input_size": list(report.input_size),
        "input_size_from": size_from,
        "output_size": list(report.output_size),
        "parameters": spec.num_params,
        "flops_per_sample": spec.flops(size),
        "dead_pixels": report.dead,
        "uneven_axes": list(report.uneven_axes),
        "verdict": report.verdict,
    }


def _shown_value(value: Any) -> str:
    """A spec field as the table shows it: ``3x3`` for pairs, crops per axis, ``yes``/``no``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return f"top/bottom {tuple(value[0])}, left/right {tuple(value[1])}"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def _print_table(summary: dict[str, Any]) -> None:
    spec = summary["spec"]
    fields = [(k, _shown_value(v)) for k, v in spec.items() if k not in ("version", "in_channels", "out_channels")]
    rows = [
        ("channels", f"{spec['in_channels']} -> {spec['out_channels']}"),
        *[("bias" if key == "use_bias" else key, value) for key, value in fields],
        ("input -> output", "{}x{} -> {}x{}".format(*summary["input_size"], *summary["output_size"])),
        ("input size from", summary["input_size_from"]),
        ("parameters", f"{summary['parameters']:,}"),
        ("FLOPs / sample", f"{summary['flops_per_sample']:,}"),
        ("coverage", summary["verdict"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        lines = textwrap.wrap(value, 78 - width) or [""]
        print(f"{name:<{width}}  {lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{width}}  {line}")


def _title(spec: dict[str, Any], size: tuple[int, int]) -> str:
    """The picture's title: the kind and the fields that shape the map, e.g. ``transposed k=3x3 s=16x16 ...``."""
    short = {"kernel_size": "k", "stride": "s", "crops": "crops", "scale": "scale", "method": "method"}
    fields = [f"{name}={_compact(spec[key])}" for key, name in short.items() if key in spec]
    return f"{spec['kind']} {' '.join(fields)} on {size[0]}x{size[1]} input"


def _compact(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    return str(tuple(tuple(v) for v in value)) if isinstance(value, list) else str(value)


def _cmd_plan(args: argparse.Namespace) -> int:
    if args.head:
        return _plan_head(args)
    spec = inputs.planned_spec(args)
    summary = _summary(spec, *inputs.input_size(args.input_size, None))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
        print(f"spec JSON: {spec.to_json()}")
    return 0


def _plan_head(args: argparse.Namespace) -> int:
    """``plan --head``: the stages of ``upsample.plan`` as a table; ``--json`` writes the ``StackSpec``."""
    from upsample.stack_plan import plan

    for flag in ("kernel", "residual"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} sets one layer; --head plans every stage itself (drop --{flag})")
    head = plan(
        args.channels,
        args.size,
        out_channels=args.out_channels,
        mode=args.mode or "transposed",
        norm=args.norm,
        activation=None if args.activation == "none" else args.activation,
        final_activation=args.final_activation,
        input_size=1 if args.input_size is None else args.input_size,
    )
    if args.json:
        print(json.dumps(head.to_dict(), indent=2))
    else:
        print(head.table())
    return 0


def _spec_and_size(args: argparse.Namespace, flags: Sequence[str]) -> tuple[Any, Any, tuple[int, int], str]:
    """``(spec, weights or None, input size, where the size came from)`` from a file or the flags."""
    loaded = None
    if args.spec:
        inputs.refuse_overridden(args, flags, args.spec)
        loaded = inputs.read_spec_file(args.spec)
        spec, weights = loaded.spec, loaded.weights
    else:
        spec, weights = (inputs.flag_spec(args) if args.command == "inspect" else inputs.planned_spec(args)), None
    size, size_from = inputs.input_size(args.input_size, loaded)
    return spec, weights, size, size_from


def _cmd_inspect(args: argparse.Namespace) -> int:
    from upsample import render

    if args.spec and args.spec.endswith(".onnx"):
        return _inspect_onnx(args)
    if args.png:
        inputs.writable_path(args.png, "--png", [".png"])
    spec, _, size, size_from = _spec_and_size(args, SPEC_FLAGS)
    inputs.refuse_big_map(spec, size, inputs.MAX_MAP_PIXELS, "the coverage map")
    if args.png:
        inputs.refuse_big_map(spec, size, inputs.MAX_PICTURE_PIXELS, "the --png picture")
    summary = _summary(spec, size, size_from)
    counts = spec.coverage(size)
    if args.json:
        summary["coverage"] = counts.tolist()
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
        print()
        print(render.text_map(counts))
        print(render.legend())
    if args.png:
        try:
            render.save_png(counts, spec.diagnose(size), args.png, _title(summary["spec"], size))
        except OSError as error:
            raise UsageError(f"--png {shown(args.png)}: cannot write: {error.strerror or error}") from None
        print(f"saved {args.png}", file=sys.stderr)
    return 0


def _inspect_onnx(args: argparse.Namespace) -> int:
    """Every ``ConvTranspose`` node of an ONNX model as a spec with its coverage verdict."""
    inputs.refuse_overridden(args, SPEC_FLAGS, args.spec)
    if args.png:
        raise UsageError("--png draws one layer: inspect an ONNX model's nodes one by one from their spec JSON")
    if not os.path.isfile(args.spec):
        raise UsageError(
            f"ONNX model {shown(args.spec)} {'is a directory' if os.path.isdir(args.spec) else 'does not exist'}"
        )
    found = []
    for layer in _onnx().describe(args.spec):
        size = inputs.input_size(args.input_size, None)[0] if layer.input_size is None else layer.input_size
        entry: dict[str, Any] = {"node": layer.name, "problem": layer.problem}
        if layer.spec is not None:
            entry.update(_summary(layer.spec, size, "the model" if layer.input_size else "--input-size or 1"))
        found.append(entry)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"{args.spec}: no ConvTranspose nodes")
    for entry in found:
        print(f"node {entry['node']}")
        if entry["problem"]:
            print(f"  not a spec: {entry['problem']}")
        else:
            _print_table(entry)
        print()
    return 0


def _onnx() -> Any:
    try:
        import upsample.onnx as onnx_module

        onnx_module.to_onnx  # noqa: B018  (imports onnx itself)
    except ImportError as error:
        raise UsageError(f'{error}; install it with: pip install "upsample[onnx]"') from None
    return onnx_module


def _cmd_export(args: argparse.Namespace) -> int:
    """A spec or weights file as a standalone ONNX model (weights: the file's, or ``init_weights(seed)``)."""
    from upsample.weights import init_weights

    inputs.writable_path(args.onnx, "--onnx", [".onnx"])
    loaded = inputs.read_spec_file(args.spec)
    size, size_from = inputs.input_size(args.input_size, loaded)
    weights = loaded.weights if loaded.weights is not None else init_weights(loaded.spec, seed=args.seed)
    _onnx().to_onnx(loaded.spec, weights, args.onnx, input_size=size, opset=args.opset)
    made = "its weights" if loaded.weights is not None else f"init_weights(seed={args.seed})"
    print(f"saved {args.onnx}: NCHW, dynamic batch, input {size[0]}x{size[1]} ({size_from}), {made}", file=sys.stderr)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    from upsample import crosscheck
    from upsample.weights import Weights, init_weights

    if not args.spec and (args.channels is None or args.size is None):
        raise UsageError("give a spec file (JSON or .safetensors) or --channels and --size (as for plan)")
    targets = crosscheck.select(args.backends)
    spec, weights, size, size_from = _spec_and_size(args, PLAN_FLAGS)
    if getattr(spec, "stages", None) is not None:
        raise UsageError(
            "check runs one layer; a head's stages can be checked one by one (their spec JSON), and whole "
            "heads are compared across the builds by tests/test_stack_*.py"
        )
    inputs.refuse_big_check(spec, args.batch, size)
    if weights is None:
        weights = init_weights(spec, seed=args.seed)
        if weights.bias is not None:  # a non-zero bias, so the bias path is checked too
            bias = np.random.default_rng(args.seed).normal(size=weights.bias.shape).astype(np.float32)
            weights = Weights(weights.kernel, bias, weights.skip)
    x = np.random.default_rng(args.seed + 1).normal(size=(args.batch, *size, spec.in_channels)).astype(np.float32)
    progress = (lambda message: None) if args.quiet else (lambda m: print(f"... {m}", file=sys.stderr, flush=True))
    rows = crosscheck.check(spec, weights, x, seed=args.seed, progress=progress, targets=targets)
    report = spec.diagnose(size)
    ok = all(row.status in ("pass", "skipped") for row in rows)
    if args.json:
        result = {"spec": spec.to_dict(), "input_size": list(size), "input_size_from": size_from}
        result |= {"input_shape": list(x.shape), "coverage": report.verdict, "ok": ok}
        print(json.dumps({**result, "rows": [dataclasses.asdict(row) for row in rows]}, indent=2))
    else:
        print(f"spec      {spec.to_json()}")
        print("size      {}x{} -> {}x{} (input size: {})".format(*size, *report.output_size, size_from))
        print(f"input     {'x'.join(map(str, x.shape))} (NHWC), float32; reference: NumPy float64")
        print(f"coverage  {report.verdict}")
        print()
        print(_check_table(rows))
        print()
        print("all backends agree with the reference" if ok else "some backends DISAGREE with the reference")
    return 0 if ok else 1


def _check_table(rows: list[Any]) -> str:
    """Aligned columns; a skipped or failed-to-run row shows its note across the number columns."""
    header = ("backend", "status", "output", "err out", "err dx", "err dW", "ms/call")
    measured = [
        (
            row.backend,
            row.status,
            "x".join(map(str, row.output_shape)),
            f"{row.error_output:.1e}",
            f"{row.error_grad_x:.1e}",
            f"{row.error_grad_weights:.1e}",
            f"{row.ms_per_call:.2f}",
        )
        for row in rows
        if row.output_shape is not None
    ]
    widths = [max(len(line[i]) for line in (header, *measured)) for i in range(len(header))]
    widths[0] = max(widths[0], *(len(row.backend) for row in rows))

    def join(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=False)).rstrip()

    lines = [join(header)]
    numbers = iter(measured)
    for row in rows:
        lines.append(join(next(numbers)) if row.output_shape is not None else join((row.backend, row.status, row.note)))
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    from upsample import bench

    if args.plot:
        inputs.writable_path(args.plot, "--plot", [".png", ".svg", ".pdf"])
    targets = bench.chosen_targets(args.backends, args.quick)
    shapes = tuple(
        dataclasses.replace(shape, kind=args.mode or "transposed")
        for shape in (bench.QUICK_SHAPES if args.quick else bench.SHAPES)
    )
    repeats = args.repeats if args.repeats is not None else (bench.QUICK_REPEATS if args.quick else bench.REPEATS)
    warmup = args.warmup if args.warmup is not None else (bench.QUICK_WARMUP if args.quick else bench.WARMUP)
    generator = not (args.quick or args.no_generator)
    rows = bench.run(
        targets, shapes, repeats, warmup, lambda m: print(f"... {m}", file=sys.stderr, flush=True), generator
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(bench.table(rows))
    if args.plot:
        try:
            bench.plot(rows, args.plot)
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or shown(str(error))
            raise UsageError(f"--plot {shown(args.plot)}: cannot write: {reason}") from None
        print(f"saved {args.plot}", file=sys.stderr)
    return 0 if rows else 1


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("spec (instead of a file)")
    group.add_argument("--mode", choices=plans.MODES, help="upsampler kind (default transposed)")
    group.add_argument("--channels", type=inputs.integer, help="input channels")
    group.add_argument("--out-channels", type=inputs.integer, help="output channels (default: --channels)")
    group.add_argument("--kernel", type=inputs.size_or_pair, help="kernel size: K or KHxKW (subpixel/resize: 3)")
    group.add_argument("--stride", type=inputs.size_or_pair, help="transposed: stride S or SHxSW (default 1)")
    group.add_argument(
        "--padding", type=inputs.padding, help="transposed: P, PHxPW, same, valid, or crops top,bottom,left,right"
    )
    group.add_argument("--output-padding", type=inputs.int_or_pair, help="transposed: OP or OPHxOPW")
    group.add_argument("--scale", type=inputs.size_or_pair, help="subpixel/resize: R or RHxRW (default 2)")
    group.add_argument("--method", choices=("nearest", "bilinear"), help="resize: method (default nearest)")
    group.add_argument("--residual", type=inputs.residual, help="none, nearest or projection")
    group.add_argument("--no-bias", action="store_true", default=None, help="no bias")


def _add_plan_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--mode", choices=plans.MODES, help="upsampler kind (default transposed)")
    parser.add_argument("--channels", type=inputs.integer, required=required, help="input channels")
    parser.add_argument("--size", type=inputs.size_or_pair, required=required, help="output size: N or HxW")
    parser.add_argument("--out-channels", type=inputs.integer, help="output channels (default: --channels)")
    parser.add_argument("--input-size", type=inputs.size_or_pair, help="input size (default 1, or the file's)")
    parser.add_argument(
        "--kernel",
        type=inputs.size_or_pair,
        help="kernel size (default: chosen; subpixel/resize: 3, or 1 on a 1-pixel axis)",
    )
    parser.add_argument("--method", choices=("nearest", "bilinear"), help="resize: method (default nearest)")
    parser.add_argument("--residual", type=inputs.residual, help="none, nearest or projection")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="upsample", description="Plan and check 1x1 -> NxN upsampling layers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    spec_help = "spec JSON file (a spec, or plan --json output; - reads stdin) or weights .safetensors file"

    plan = commands.add_parser("plan", help="choose a spec that reaches a size with every pixel live")
    _add_plan_flags(plan, required=True)
    plan.add_argument("--json", action="store_true", help="machine-readable output (a spec file for inspect/check)")
    head = plan.add_argument_group("a whole head (--head): stages from --input-size to --size")
    head.add_argument("--head", action="store_true", help="plan a head of stages instead of one layer")
    head.add_argument("--norm", choices=("batch", "group"), help="normalisation after each stage but the last")
    head.add_argument("--activation", default="relu", help="activation between stages (default relu; none)")
    head.add_argument("--final-activation", help="activation after the last stage (e.g. tanh; default none)")
    plan.set_defaults(run=_cmd_plan)

    inspect = commands.add_parser("inspect", help="draw which output pixels the input reaches")
    inspect.add_argument("spec", nargs="?", help=spec_help + ", or an .onnx model (lists its ConvTranspose nodes)")
    _add_spec_flags(inspect)
    inspect.add_argument("--input-size", type=inputs.size_or_pair, help="input size (default: the file's, or 1)")
    inspect.add_argument("--png", metavar="PATH", help="also save the map as a .png file (needs matplotlib)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_cmd_inspect)

    check = commands.add_parser("check", help="build in every installed backend and compare with the reference")
    check.add_argument("spec", nargs="?", help=spec_help + " (its weights are used)")
    _add_plan_flags(check, required=False)
    check.add_argument("--backends", help="comma-separated subset, e.g. torch,keras/jax (default: all installed)")
    check.add_argument("--batch", type=inputs.positive_int, default=2, help="batch size (default 2)")
    check.add_argument("--seed", type=inputs.non_negative_int, default=0, help="seed for weights and data (default 0)")
    check.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=_cmd_check)

    export = commands.add_parser("export", help="write a spec or weights file as a standalone ONNX model")
    export.add_argument("spec", help=spec_help)
    export.add_argument("--onnx", metavar="PATH", required=True, help="the .onnx file to write (needs upsample[onnx])")
    export.add_argument("--input-size", type=inputs.size_or_pair, help="input size (default: the file's, or 1)")
    export.add_argument("--opset", type=inputs.positive_int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--seed", type=inputs.non_negative_int, default=0, help="weights seed for a spec file")
    export.set_defaults(run=_cmd_export)

    bench = commands.add_parser("bench", help="time native layer, ours and a plain matmul side by side")
    bench.add_argument("--mode", choices=plans.MODES, help="upsampler kind of every shape (default transposed)")
    bench.add_argument("--backends", help="comma-separated subset, e.g. torch,flax-linen (default: all installed)")
    bench.add_argument(
        "--quick", action="store_true", help="smoke test: one tiny shape, 3 rounds, Keras on $KERAS_BACKEND only"
    )
    bench.add_argument("--repeats", type=inputs.positive_int, help="timed rounds per shape (default 30; quick 3)")
    bench.add_argument("--warmup", type=inputs.non_negative_int, help="untimed calls first (default 5; quick 1)")
    bench.add_argument(
        "--no-generator", action="store_true", help="skip the end-to-end DCGAN generator training step row"
    )
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.add_argument(
        "--plot", metavar="PATH", help="save a bar chart of the ratios: .png, .svg or .pdf (needs matplotlib)"
    )
    bench.set_defaults(run=_cmd_bench)
    return parser


_USER_ERRORS = (UsageError, ValueError, TypeError, OverflowError, MemoryError, RecursionError, ImportError, OSError)
"""What bad input raises (``WeightsFileError`` is a ``ValueError``): one line and exit code 2."""


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so the exit's flush cannot fail again (Python docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _message(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return "out of memory; use smaller sizes"
    if isinstance(error, RecursionError):
        return "input nested too deeply"
    return _one_line(str(error) or type(error).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``upsample`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code = int(args.run(args))
    except BrokenPipeError:  # `upsample ... | head`: the reader has gone; stop quietly
        _stdout_to_devnull()
        return 1
    except KeyboardInterrupt:
        print(f"upsample {args.command}: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as error:
        message = _message(error)
        if isinstance(error, OSError) and error.errno is not None and error.filename is None:
            _stdout_to_devnull()  # an OS error naming no file: writing the output failed (a full disk, say)
            message = f"cannot write the output: {error.strerror}"
        print(f"upsample {args.command}: error: {message}", file=sys.stderr)
        return 2
    try:
        sys.stdout.flush()  # a closed pipe or a full disk shows here, not as a traceback at exit
    except BrokenPipeError:
        _stdout_to_devnull()
        return 1
    except OSError as error:
        _stdout_to_devnull()
        print(f"upsample {args.command}: error: cannot write the output: {error.strerror or error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
