"""The flags the ``upsample`` commands share (a spec's, a plan's, a head's), and the check that names a
misspelled flag before argparse would report a required one as missing."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

from upsample import cli_inputs as inputs
from upsample import plans
from upsample.arguments import SPATIAL_DIMS
from upsample.head import NORM_KINDS
from upsample.interpolation import METHOD_NAMES, METHODS

HEAD_FLAGS = ("norm", "groups", "activation", "final_activation")
"""``plan``'s flags that only a head (``--head``) takes."""

RESIZE_METHODS = (*METHODS, *METHOD_NAMES)
"""``--method``'s choices: ``nearest``, ``linear``, ``cubic`` and the names ``bilinear``, ``trilinear``, ``bicubic``."""


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("spec (instead of a file)")
    group.add_argument("--mode", choices=plans.MODES, help="upsampler kind (default transposed)")
    group.add_argument("--channels", type=inputs.integer, help="input channels")
    group.add_argument("--out-channels", type=inputs.integer, help="output channels (default: --channels)")
    group.add_argument(
        "--kernel", type=inputs.size_or_pair, help="kernel size: K, KHxKW or KDxKHxKW (subpixel/resize: 3)"
    )
    group.add_argument("--stride", type=inputs.size_or_pair, help="transposed: stride S, SHxSW, ... (default 1)")
    group.add_argument(
        "--padding",
        type=inputs.padding,
        help="transposed: P, PHxPW, same, valid, or crops top,bottom,left,right (front,back first in 3-D)",
    )
    group.add_argument("--output-padding", type=inputs.int_or_pair, help="transposed: OP, OPHxOPW, ...")
    group.add_argument(
        "--scale", type=inputs.factor_or_pair, help="subpixel/resize: R, RHxRW, ... (default 2; a resize's: 1.5 too)"
    )
    group.add_argument("--method", choices=RESIZE_METHODS, help="resize: method (default nearest)")
    group.add_argument("--residual", type=inputs.residual, help="none, nearest or projection")
    group.add_argument("--no-bias", action="store_true", default=None, help="no bias")
    add_rank_flag(group)


def add_plan_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--mode", choices=plans.MODES, help="upsampler kind (default transposed)")
    parser.add_argument("--channels", type=inputs.integer, required=required, help="input channels")
    parser.add_argument("--size", type=inputs.size_or_pair, required=required, help="output size: N, HxW or DxHxW")
    parser.add_argument("--out-channels", type=inputs.integer, help="output channels (default: --channels)")
    parser.add_argument("--input-size", type=inputs.size_or_pair, help="input size (default 1, or the file's)")
    parser.add_argument(
        "--kernel",
        type=inputs.size_or_pair,
        help="kernel size (default: chosen; subpixel/resize: 3, or 1 on a 1-pixel axis)",
    )
    parser.add_argument("--method", choices=RESIZE_METHODS, help="resize: method (default nearest)")
    parser.add_argument("--residual", type=inputs.residual, help="none, nearest or projection")
    parser.add_argument("--no-bias", action="store_true", default=None, help="no bias (every stage of a head)")
    add_rank_flag(parser)


def add_rank_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--spatial-dims",
        type=int,
        choices=SPATIAL_DIMS,
        help="spatial axes: 1 (sequences), 2 (images) or 3 (volumes); default: the number of parts of the sizes "
        "(64x64x64 is 3-D), else 2",
    )


def add_head_flags(parser: argparse.ArgumentParser) -> None:
    head = parser.add_argument_group("a whole head (--head): stages from --input-size to --size")
    head.add_argument("--head", action="store_true", help="plan a head of stages instead of one layer")
    head.add_argument("--norm", choices=NORM_KINDS, help="normalisation after each stage but the last")
    head.add_argument(
        "--groups",
        type=inputs.positive_int,
        help="--norm group: groups (default: the largest up to 32 dividing every normalised stage's channels)",
    )
    head.add_argument("--activation", help="activation between stages (default relu; none)")
    head.add_argument("--final-activation", help="activation after the last stage (e.g. tanh; default none)")


def refuse_unknown_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """A misspelled ``--flag`` is named first, with the closest known one, before argparse would report
    a required flag as missing; a unique prefix of a known flag (argparse's abbreviation) passes."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    where = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    target = None if where is None else commands.choices.get(argv[where])
    if where is None or target is None:
        return  # argparse names the missing or unknown command
    command = argv[where]
    known = [flag for flag in target._option_string_actions if flag.startswith("--")]
    for word in argv[where + 1 :]:
        if word == "--":
            break
        flag = word.split("=", 1)[0]
        if not flag.startswith("--") or any(option.startswith(flag) for option in known):
            continue
        close = difflib.get_close_matches(flag, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"{command} takes {', '.join(sorted(known))}"
        target.error(f"unknown flag {flag[:60]}; {hint}")
