"""The ``upsample`` command: plan a layer or head, inspect its coverage, check it everywhere, time it, export it
(:mod:`upsample.cli_export`). Its flags are in :mod:`upsample.cli_flags`, what it reads in
:mod:`upsample.cli_inputs`, what it prints in :mod:`upsample.cli_output`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from upsample import __version__, cli_export, cli_flags, plans
from upsample import cli_inputs as inputs
from upsample import cli_output as output
from upsample.arguments import size_text
from upsample.checks import layout_name
from upsample.cli_inputs import PLAN_FLAGS, SPEC_FLAGS, UsageError
from upsample.head import HeadSpec
from upsample.messages import shown

MESSAGE_LIMIT = 400
"""Characters of an error line at most (values inside are already short; this bounds the rest)."""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."


class _Parser(argparse.ArgumentParser):
    """argparse with one bounded error line (no usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def _cmd_plan(args: argparse.Namespace) -> int:
    if args.head:
        return _plan_head(args)
    for flag in cli_flags.HEAD_FLAGS:
        if getattr(args, flag) is not None:
            name = "--" + flag.replace("_", "-")
            raise UsageError(f"{name} needs --head: one layer has no norm or activation (add --head or drop {name})")
    spec = inputs.planned_spec(args)
    summary = output.summary(spec, *inputs.input_size(args.input_size, None, spec))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        output.print_table(summary)
        print(f"spec JSON: {spec.to_json()}")
    return 0


def _plan_head(args: argparse.Namespace) -> int:
    """``plan --head``: the stages of ``upsample.plan`` as a table; ``--json`` writes the ``HeadSpec``."""
    from upsample.head_plan import plan

    for flag in ("kernel", "residual"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} sets one layer; --head plans every stage itself (drop --{flag})")
    mode = args.mode or "transposed"
    if args.method is not None and mode != "resize":
        raise UsageError(f"--method applies to --mode resize only, not --mode {mode}")
    if args.groups is not None and args.norm != "group":
        raise UsageError(f"--groups {args.groups} sets GroupNorm's groups: it needs --norm group")
    norm = {"kind": "group", "groups": args.groups} if args.groups is not None else args.norm
    activation = "relu" if args.activation is None else args.activation
    head = plan(
        args.channels,
        args.size,
        out_channels=args.out_channels,
        mode=mode,
        norm=norm,
        activation=None if activation == "none" else activation,
        final_activation=args.final_activation,
        input_size=1 if args.input_size is None else args.input_size,
        method=args.method,
        use_bias=not args.no_bias,
        spatial_dims=args.spatial_dims,
    )
    if args.json:
        print(json.dumps(head.to_dict(), indent=2))
    else:
        print(head.table())
        if head.norm is not None:
            print(output.norm_line(head.norm))
    return 0


def _spec_and_size(args: argparse.Namespace, flags: Sequence[str]) -> tuple[Any, Any, tuple[int, ...], str]:
    """``(spec, weights or None, input size, where the size came from)`` from a file or the flags."""
    loaded = None
    if args.spec:
        inputs.refuse_overridden(args, flags, args.spec)
        loaded = inputs.read_spec_file(args.spec)
        spec, weights = loaded.spec, loaded.weights
    else:
        spec, weights = (inputs.flag_spec(args) if args.command == "inspect" else inputs.planned_spec(args)), None
    size, size_from = inputs.input_size(args.input_size, loaded, spec)
    return spec, weights, size, size_from


def _cmd_inspect(args: argparse.Namespace) -> int:
    from upsample import render

    if args.spec and args.spec.endswith(".onnx"):
        return cli_export.inspect_onnx(args)
    if args.png:
        inputs.writable_path(args.png, "--png", [".png"])
    spec, _, size, size_from = _spec_and_size(args, SPEC_FLAGS)
    if isinstance(spec, HeadSpec):
        return _inspect_head(args, spec, size, size_from)
    inputs.refuse_big_map(spec, size, inputs.MAX_MAP_PIXELS, "the coverage map")
    if args.png:
        inputs.refuse_big_map(spec, size, inputs.MAX_PICTURE_PIXELS, "the --png picture")
    summary = output.summary(spec, size, size_from)
    counts = spec.coverage(size)
    if args.json:
        summary["coverage"] = counts.tolist()
        print(json.dumps(summary, indent=2))
    else:
        output.print_table(summary)
        print()
        print(render.text_map(counts))
        print(render.legend())
    if args.png:
        try:
            render.save_png(counts, spec.diagnose(size), args.png, output.title(summary["spec"], size))
        except OSError as error:
            raise UsageError(f"--png {shown(args.png)}: cannot write: {error.strerror or error}") from None
        print(f"saved {args.png}", file=sys.stderr)
    return 0


def _inspect_head(args: argparse.Namespace, head: HeadSpec, size: tuple[int, ...], size_from: str) -> int:
    """A whole head: its stage table and each stage's coverage verdict at that stage's input size."""
    if args.png:
        raise UsageError("--png draws one layer: inspect a head's stages one by one from their spec JSON")
    summary = output.head_summary(head, size, size_from)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        output.print_head(head, summary)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    from upsample import crosscheck
    from upsample.weights import Weights, init_weights

    if not args.spec and (args.channels is None or args.size is None):
        raise UsageError("give a spec file (JSON or .safetensors) or --channels and --size (as for plan)")
    targets = crosscheck.select(args.backends)
    spec, weights, size, size_from = _spec_and_size(args, PLAN_FLAGS)
    progress = (lambda message: None) if args.quiet else (lambda m: print(f"... {m}", file=sys.stderr, flush=True))
    if isinstance(spec, HeadSpec):
        return _check_head(args, spec, weights, size, targets, progress)
    inputs.refuse_big_check(spec, args.batch, size)
    if weights is None:
        weights = init_weights(spec, seed=args.seed)
        if weights.bias is not None:  # a non-zero bias, so the bias path is checked too
            bias = np.random.default_rng(args.seed).normal(size=weights.bias.shape).astype(np.float32)
            weights = Weights(weights.kernel, bias, weights.skip)
    x = np.random.default_rng(args.seed + 1).normal(size=(args.batch, *size, spec.in_channels)).astype(np.float32)
    rows = crosscheck.check(spec, weights, x, seed=args.seed, progress=progress, targets=targets)
    report = spec.diagnose(size)
    ok = all(row.status in ("pass", "skipped") for row in rows)
    if args.json:
        result = {"spec": spec.to_dict(), "input_size": list(size), "input_size_from": size_from}
        result |= {"input_shape": list(x.shape), "coverage": report.verdict, "ok": ok}
        print(json.dumps({**result, "rows": [dataclasses.asdict(row) for row in rows]}, indent=2))
    else:
        print(f"spec      {spec.to_json()}")
        print(f"size      {size_text(size)} -> {size_text(report.output_size)} (input size: {size_from})")
        layout = layout_name("NHWC", spec.spatial_dims)
        print(f"input     {'x'.join(map(str, x.shape))} ({layout}), float32; reference: NumPy float64")
        print(f"coverage  {report.verdict}")
        print()
        print(output.check_table(rows))
        print()
        print("all backends agree with the reference" if ok else "some backends DISAGREE with the reference")
    return 0 if ok else 1


def _check_head(
    args: argparse.Namespace,
    head: HeadSpec,
    weights: Any,
    size: tuple[int, ...],
    targets: Any,
    progress: Callable[[str], None],
) -> int:
    """``check`` of a whole head: forward in both modes, gradients and three SGD steps in every build."""
    from upsample import crosscheck

    if size != head.input_size:
        raise UsageError(
            f"--input-size {size_text(size)}: a head's input size is part of its spec "
            f"({size_text(head.input_size)}); plan the head for that size instead"
        )
    for stage, stage_size in zip(head.stages, head.stage_sizes(), strict=False):
        inputs.refuse_big_check(stage, args.batch, stage_size)
    weights = crosscheck.head_check_weights(head, args.seed) if weights is None else weights
    data = crosscheck.head_data(head, batch=args.batch, seed=args.seed)
    rows = crosscheck.check_head(head, weights, data, progress=progress, targets=targets)
    ok = all(row.status in ("pass", "skipped") for row in rows)
    out = head.output_size()
    if args.json:
        result = {"spec": head.to_dict(), "input_size": list(size), "learning_rate": crosscheck.HEAD_LEARNING_RATE}
        print(json.dumps({**result, "steps": len(data), "ok": ok, "rows": [dataclasses.asdict(r) for r in rows]}))
    else:
        print(head.table())
        print(f"size      {size_text(size)} -> {size_text(out)}, batch {args.batch}, float32")
        print(
            f"compared  training and inference mode outputs, input and weight gradients, and the weights and running "
            f"statistics after {len(data)} SGD steps (rate {crosscheck.HEAD_LEARNING_RATE}); reference: NumPy float64"
        )
        print()
        print(output.check_table(rows))
        print()
        print("all backends agree with the reference" if ok else "some backends DISAGREE with the reference")
    return 0 if ok else 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="upsample", description="Plan and check 1x1 -> NxN upsampling layers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    spec_help = (
        "spec JSON file (a layer's or a head's, or plan --json output; - reads stdin) or a layer's or head's "
        "weights .safetensors file"
    )

    plan = commands.add_parser("plan", help="choose a spec that reaches a size with every pixel live")
    cli_flags.add_plan_flags(plan, required=True)
    plan.add_argument("--json", action="store_true", help="machine-readable output (a spec file for inspect/check)")
    cli_flags.add_head_flags(plan)
    plan.set_defaults(run=_cmd_plan)

    inspect = commands.add_parser("inspect", help="draw which output pixels the input reaches")
    inspect.add_argument("spec", nargs="?", help=spec_help + ", or an .onnx model (lists its ConvTranspose nodes)")
    cli_flags.add_spec_flags(inspect)
    inspect.add_argument("--input-size", type=inputs.size_or_pair, help="input size (default: the file's, or 1)")
    inspect.add_argument("--png", metavar="PATH", help="also save the map as a .png file (needs matplotlib)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_cmd_inspect)

    check = commands.add_parser("check", help="build in every installed backend and compare with the reference")
    check.add_argument("spec", nargs="?", help=spec_help + " (its weights are used)")
    cli_flags.add_plan_flags(check, required=False)
    check.add_argument("--backends", help="comma-separated subset, e.g. torch,keras/jax (default: all installed)")
    check.add_argument("--batch", type=inputs.positive_int, default=2, help="batch size (default 2)")
    check.add_argument("--seed", type=inputs.non_negative_int, default=0, help="seed for weights and data (default 0)")
    check.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=_cmd_check)

    cli_export.add_export_command(commands, spec_help)

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
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    cli_flags.refuse_unknown_flags(parser, words)
    args = parser.parse_args(words)
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
