"""The ``upsample`` command: plan a layer, inspect its coverage."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from upsample import render
from upsample.spec import UpsampleSpec
from upsample.weights import WeightsFileError, load_weights


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_or_pair(text: str) -> int | tuple[int, int]:
    """``16`` or ``16x8`` / ``16,8``."""
    parts = text.replace("x", ",").split(",")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or HxW, got {text!r}") from None
    if len(numbers) == 1:
        return numbers[0]
    if len(numbers) == 2:
        return (numbers[0], numbers[1])
    raise argparse.ArgumentTypeError(f"expected an int or HxW, got {text!r}")


def _padding(text: str) -> Any:
    """``same``/``valid``, an int or HxW pair, or crops ``top,bottom,left,right``."""
    if text.lower() in ("same", "valid"):
        return text.lower()
    parts = text.split(",")
    if len(parts) not in (1, 2, 4) or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected same, valid, P, PHxPW or crops top,bottom,left,right, got {text!r}")
    if len(parts) == 4:
        try:
            t, b, left, r = (int(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"crops must be four ints top,bottom,left,right, got {text!r}") from None
        return ((t, b), (left, r))
    return _int_or_pair(text)


def _residual(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("spec (instead of a file)")
    group.add_argument("--channels", type=int, help="input channels")
    group.add_argument("--out-channels", type=int, help="output channels (default: --channels)")
    group.add_argument("--kernel", type=_int_or_pair, help="kernel size: K or KHxKW")
    group.add_argument("--stride", type=_int_or_pair, default=1, help="stride: S or SHxSW (default 1)")
    group.add_argument(
        "--padding", type=_padding, default=0, help="P, PHxPW, same, valid, or crops top,bottom,left,right (default 0)"
    )
    group.add_argument("--output-padding", type=_int_or_pair, default=None, help="OP or OPHxOPW")
    group.add_argument("--residual", type=_residual, default=None, help="none, nearest or projection")
    group.add_argument("--no-bias", action="store_true", help="no bias")


def _spec_from_flags(args: argparse.Namespace) -> UpsampleSpec:
    if args.spec:
        return _spec_from_file(args.spec)
    if args.channels is None or args.kernel is None:
        raise UsageError("give a spec file (JSON or .safetensors) or at least --channels and --kernel")
    return UpsampleSpec(
        args.channels,
        args.out_channels,
        kernel_size=args.kernel,
        stride=args.stride,
        padding=args.padding,
        output_padding=args.output_padding,
        residual=args.residual,
        use_bias=not args.no_bias,
    )


def _spec_from_file(path: str) -> UpsampleSpec:
    if path.endswith(".safetensors"):
        return load_weights(path)[0]
    try:
        with open(path, encoding="utf-8") as handle:
            return UpsampleSpec.from_json(handle.read())
    except OSError as error:
        raise UsageError(f"cannot read spec file {path!r}: {error.strerror}") from None


def _summary(spec: UpsampleSpec, input_size: Any) -> dict[str, Any]:
    report = spec.diagnose(input_size)
    return {
        "spec": spec.to_dict(),
        "input_size": list(report.input_size),
        "output_size": list(report.output_size),
        "parameters": spec.num_params,
        "flops_per_sample": spec.flops(input_size),
        "dead_pixels": report.dead,
        "uneven_axes": list(report.uneven_axes),
        "verdict": report.verdict,
    }


def _print_table(summary: dict[str, Any]) -> None:
    spec = summary["spec"]
    rows = [
        ("channels", f"{spec['in_channels']} -> {spec['out_channels']}"),
        ("kernel_size", "x".join(map(str, spec["kernel_size"]))),
        ("stride", "x".join(map(str, spec["stride"]))),
        ("crops", f"top/bottom {tuple(spec['crops'][0])}, left/right {tuple(spec['crops'][1])}"),
        ("residual", str(spec["residual"])),
        ("bias", "yes" if spec["use_bias"] else "no"),
        ("input -> output", "{}x{} -> {}x{}".format(*summary["input_size"], *summary["output_size"])),
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


def _planned_spec(args: argparse.Namespace) -> UpsampleSpec:
    """The spec ``for_size`` picks from the ``plan`` flags (shared by ``plan`` and ``check``)."""
    return UpsampleSpec.for_size(
        args.channels,
        args.size,
        out_channels=args.out_channels,
        input_size=args.input_size,
        kernel_size=args.kernel,
        residual=args.residual,
    )


def _add_plan_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--channels", type=int, required=required, help="input channels")
    parser.add_argument("--size", type=_int_or_pair, required=required, help="output size: N or HxW")
    parser.add_argument("--out-channels", type=int, default=None, help="output channels (default: --channels)")
    parser.add_argument("--input-size", type=_int_or_pair, default=1, help="input size (default 1)")
    parser.add_argument("--kernel", type=_int_or_pair, default=None, help="kernel size (default: chosen)")
    parser.add_argument("--residual", type=_residual, default=None, help="none, nearest or projection")


def _cmd_plan(args: argparse.Namespace) -> int:
    spec = _planned_spec(args)
    summary = _summary(spec, args.input_size)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
        print(f"spec JSON: {spec.to_json()}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    spec = _spec_from_flags(args)
    summary = _summary(spec, args.input_size)
    counts = spec.coverage(args.input_size)
    if args.json:
        summary["coverage"] = counts.tolist()
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
        print()
        print(render.text_map(counts))
        print(render.legend())
    if args.png:
        report = spec.diagnose(args.input_size)
        title = "k={} s={} crops={} on {}x{} input".format(
            "x".join(map(str, spec.kernel_size)), "x".join(map(str, spec.stride)), spec.crops, *report.input_size
        )
        render.save_png(counts, report, args.png, title)
        print(f"saved {args.png}", file=sys.stderr)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    from upsample import check
    from upsample.weights import init_weights

    if args.spec and args.spec.endswith(".safetensors"):
        spec, weights = load_weights(args.spec)
    else:
        if args.spec:
            spec = _spec_from_file(args.spec)
        elif args.channels is None or args.size is None:
            raise UsageError("give a spec file (JSON or .safetensors) or --channels and --size (as for plan)")
        else:
            spec = _planned_spec(args)
        weights = init_weights(spec, seed=args.seed)
        if spec.use_bias:  # a non-zero bias, so the bias path is checked too
            bias = np.random.default_rng(args.seed).normal(size=spec.out_channels).astype(np.float32)
            weights = type(weights)(weights.kernel, bias, weights.skip)
    size = _pair_of(args.input_size)
    spec.output_size(size)
    x = np.random.default_rng(args.seed + 1).normal(size=(args.batch, *size, spec.in_channels)).astype(np.float32)
    progress = (lambda message: print(f"... {message}", file=sys.stderr, flush=True)) if not args.quiet else None
    rows = check.check(spec, weights, x, seed=args.seed, progress=progress or (lambda message: None))
    report = spec.diagnose(size)
    ok = all(row.status in ("pass", "skipped") for row in rows)
    if args.json:
        print(
            json.dumps(
                {
                    "spec": spec.to_dict(),
                    "input_shape": list(x.shape),
                    "coverage": report.verdict,
                    "ok": ok,
                    "rows": [dataclasses.asdict(row) for row in rows],
                },
                indent=2,
            )
        )
    else:
        print(f"spec      {spec.to_json()}")
        print(f"input     {'x'.join(map(str, x.shape))} (NHWC), float32; reference: NumPy float64")
        print(f"coverage  {report.verdict}")
        print()
        print(_check_table(rows))
        print()
        print("all backends agree with the reference" if ok else "some backends DISAGREE with the reference")
    return 0 if ok else 1


def _pair_of(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


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
    from upsample.check import TARGETS

    labels = [t.label for t in TARGETS]
    chosen = args.backends.split(",") if args.backends else labels
    unknown = [name for name in chosen if name not in labels]
    if unknown:
        raise UsageError(f"--backends must name some of {', '.join(labels)}; got unknown {', '.join(unknown)}")
    targets = tuple(t for t in TARGETS if t.label in chosen)
    shapes = bench.QUICK_SHAPES if args.quick else bench.SHAPES
    rows = bench.run(
        targets, shapes, args.repeats, args.warmup, lambda m: print(f"... {m}", file=sys.stderr, flush=True)
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(bench.table(rows))
    if args.plot:
        bench.plot(rows, args.plot)
        print(f"saved {args.plot}", file=sys.stderr)
    return 0 if rows else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="upsample", description="Plan and check 1x1 -> NxN upsampling layers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = commands.add_parser("plan", help="choose a spec that reaches a size with every pixel live")
    _add_plan_flags(plan, required=True)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(run=_cmd_plan)

    inspect = commands.add_parser("inspect", help="draw which output pixels the input reaches")
    inspect.add_argument("spec", nargs="?", help="spec JSON file or weights .safetensors file")
    _add_spec_flags(inspect)
    inspect.add_argument("--input-size", type=_int_or_pair, default=1, help="input size (default 1)")
    inspect.add_argument("--png", metavar="PATH", help="also save the map as a PNG (needs matplotlib)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_cmd_inspect)

    check = commands.add_parser("check", help="build in every installed backend and compare with the reference")
    check.add_argument("spec", nargs="?", help="spec JSON file, or weights .safetensors file (its weights are used)")
    _add_plan_flags(check, required=False)
    check.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    check.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    check.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=_cmd_check)

    bench = commands.add_parser("bench", help="time native layer, ours and a plain matmul side by side")
    bench.add_argument("--backends", help="comma-separated subset, e.g. torch,flax-linen (default: all installed)")
    bench.add_argument("--quick", action="store_true", help="two tiny shapes (a smoke test, not a measurement)")
    bench.add_argument("--repeats", type=int, default=30, help="timed rounds per shape (default 30)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.add_argument("--plot", metavar="PATH", help="save a bar chart of the ratios (needs matplotlib)")
    bench.set_defaults(run=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``upsample`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, ValueError, TypeError, ImportError, FileNotFoundError, WeightsFileError) as error:
        print(f"upsample {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
