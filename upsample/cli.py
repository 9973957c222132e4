"""The ``upsample`` command: plan a layer, inspect its coverage."""

from __future__ import annotations

import argparse
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


def _cmd_plan(args: argparse.Namespace) -> int:
    spec = UpsampleSpec.for_size(
        args.channels,
        args.size,
        out_channels=args.out_channels,
        input_size=args.input_size,
        kernel_size=args.kernel,
        residual=args.residual,
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="upsample", description="Plan and check 1x1 -> NxN upsampling layers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = commands.add_parser("plan", help="choose a spec that reaches a size with every pixel live")
    plan.add_argument("--channels", type=int, required=True, help="input channels")
    plan.add_argument("--size", type=_int_or_pair, required=True, help="output size: N or HxW")
    plan.add_argument("--out-channels", type=int, default=None)
    plan.add_argument("--input-size", type=_int_or_pair, default=1, help="input size (default 1)")
    plan.add_argument("--kernel", type=_int_or_pair, default=None, help="kernel size (default: chosen)")
    plan.add_argument("--residual", type=_residual, default=None, help="none, nearest or projection")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(run=_cmd_plan)

    inspect = commands.add_parser("inspect", help="draw which output pixels the input reaches")
    inspect.add_argument("spec", nargs="?", help="spec JSON file or weights .safetensors file")
    _add_spec_flags(inspect)
    inspect.add_argument("--input-size", type=_int_or_pair, default=1, help="input size (default 1)")
    inspect.add_argument("--png", metavar="PATH", help="also save the map as a PNG (needs matplotlib)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_cmd_inspect)
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
