"""What the ``upsample`` command reads: flag values, spec and weights files (of one layer or a whole head),
and the sizes it refuses.

Every problem becomes a :class:`UsageError`: one line that names the flag or file and shows at most a
short prefix of the value (:func:`upsample.messages.shown`), so the command exits with code 2 and no
traceback. Work the command itself would allocate is checked here before
anything is allocated; the core checks its own (``upsample.limits``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from upsample import limits
from upsample.arguments import SPATIAL_DIMS, as_axes, size_text
from upsample.messages import shown

if TYPE_CHECKING:
    from upsample.head_weights import HeadWeights
    from upsample.weights import Weights

SPEC_FLAGS = (
    "mode channels out_channels kernel stride padding output_padding scale method residual no_bias spatial_dims"
).split()
"""``inspect``'s flags that describe a spec: refused together with a spec file."""
PLAN_FLAGS = ("mode", "channels", "size", "out_channels", "kernel", "residual", "method", "no_bias", "spatial_dims")
"""``check``'s flags that describe a spec: refused together with a spec file (``--input-size`` is not)."""
MAX_SPEC_FILE_BYTES = 1 << 24
"""A spec file (or the ``plan``/``inspect --json`` output that stands for one) is at most 16 MiB."""
MAX_MAP_PIXELS = 1 << 22
"""Pixels of the coverage map ``inspect`` computes and prints (2048x2048)."""
MAX_PICTURE_PIXELS = 1 << 20
"""Pixels of the map ``inspect --png`` draws (1024x1024; matplotlib holds several float copies)."""
MAX_CHECK_VALUES = 1 << 24
"""Values in any one array ``check`` makes (weights, input, output): 64 MiB as float32."""


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


# --- flag values (argparse types: their errors become "argument --flag: ...") ------------------


def _int(text: str, minimum: int | None = None) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {shown(text)}") from None
    if minimum is not None and number < minimum:
        raise argparse.ArgumentTypeError(f"must be {'positive' if minimum == 1 else f'>= {minimum}'}, got {number}")
    return number


def integer(text: str) -> int:
    """Any int (the spec checks its range and names its argument)."""
    return _int(text)


def positive_int(text: str) -> int:
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    return _int(text, 0)


def _axes(text: str, minimum: int | None) -> int | tuple[int, ...]:
    """``16`` (every axis), or one value per spatial axis: ``16x8`` / ``16,8`` (2-D), ``8x8x8`` (3-D)."""
    parts = text.replace("x", ",").split(",")
    expected = "an int, HxW or DxHxW" if minimum is None else "a positive int, HxW or DxHxW"
    try:
        numbers = [_int(part, minimum) for part in parts]
    except argparse.ArgumentTypeError:
        numbers = []
    if not 1 <= len(numbers) <= max(SPATIAL_DIMS):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(text)}")
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def int_or_pair(text: str) -> int | tuple[int, ...]:
    """An int or one per spatial axis (HxW, DxHxW), of any sign (the spec checks the range)."""
    return _axes(text, None)


def size_or_pair(text: str) -> int | tuple[int, ...]:
    """A positive int or one per spatial axis (HxW, DxHxW): a size, a kernel, a stride, a scale."""
    return _axes(text, 1)


def factor_or_pair(text: str) -> float | tuple[float, ...]:
    """A positive number or one per spatial axis (RHxRW, RDxRHxRW): a scale (a resize's may be a float: 1.5,
    1.5x2)."""
    parts = text.replace("x", ",").split(",")
    try:
        numbers = [int(part) if part.strip().lstrip("+").isdigit() else float(part) for part in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= max(SPATIAL_DIMS) or not all(0 < n < math.inf for n in numbers):
        raise argparse.ArgumentTypeError(f"expected a positive number, RHxRW or RDxRHxRW, got {shown(text)}")
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def padding(text: str) -> Any:
    """``same``/``valid``, an int or one per axis (PHxPW, PDxPHxPW), or crops ``top,bottom,left,right`` (2-D)
    or ``front,back,top,bottom,left,right`` (3-D)."""
    if text.lower() in ("same", "valid"):
        return text.lower()
    parts = text.split(",")
    if len(parts) in (4, 6):
        try:
            numbers = [_int(part) for part in parts]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"crops must be {len(parts)} ints (begin,end per axis), got {shown(text)}"
            ) from None
        return tuple(zip(numbers[::2], numbers[1::2], strict=True))
    try:
        return _axes(text, None)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected same, valid, P, PHxPW, PDxPHxPW or crops top,bottom,left,right (front,back first in 3-D), "
            f"got {shown(text)}"
        ) from None


def residual(text: str) -> str | None:
    return None if text.lower() == "none" else text


# --- spec and weights files ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A spec read from a file, with the weights and the intended input size the file carries, if any.

    ``spec`` is a single layer's spec or a :class:`~upsample.HeadSpec` (:attr:`is_head`); ``weights`` then
    ``Weights`` or ``HeadWeights`` (from a ``.safetensors`` file), ``None`` for JSON. A head's input size is
    the one its HeadSpec records, unless a ``plan``/``inspect --json`` wrapper gives another."""

    spec: Any
    weights: Weights | HeadWeights | None
    input_size: tuple[int, ...] | None
    path: str

    @property
    def is_head(self) -> bool:
        """Whether the file holds a whole head (``spec`` a HeadSpec, ``weights`` HeadWeights or ``None``)."""
        from upsample.head import HeadSpec

        return isinstance(self.spec, HeadSpec)


def read_spec_file(path: str) -> Loaded:
    """A spec JSON file (a bare spec or HeadSpec, or ``{"spec": ..., "input_size": [h, w]}`` as ``plan --json``
    writes; ``-`` reads standard input) or a ``.safetensors`` file of one layer's weights or a whole head's."""
    if os.path.isdir(path):
        kind = "weights" if path.endswith(".safetensors") else "spec"
        raise UsageError(f"{kind} file {shown(path)} is a directory, not a file")
    if path.endswith(".safetensors"):
        return _read_weights_file(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except RecursionError:
        raise UsageError(f"spec file {shown(path)} is nested too deeply to be a spec") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"spec file {shown(path)} is not valid JSON: {shown(str(error))[1:-1]}") from None
    except ValueError:  # an int over Python's digit limit (CVE-2020-10735)
        raise UsageError(
            f"spec file {shown(path)} holds an integer of over {sys.get_int_max_str_digits():,} digits"
        ) from None
    return _loaded(data, path)


def _read_weights_file(path: str) -> Loaded:
    """One layer's weights (``save_weights``) or a head's (``save_head``), by the kind its metadata names."""
    from upsample.head import HeadSpec
    from upsample.head_weights import load_any
    from upsample.weights import WeightsFileError, saved_input_size

    spec, weights = load_any(path)
    if isinstance(spec, HeadSpec):
        return Loaded(spec, weights, spec.input_size, path)
    try:
        size = saved_input_size(path)
    except WeightsFileError:
        raise
    except ValueError:  # an int over Python's digit limit
        raise UsageError(f"weights file {shown(path)} records an invalid input size") from None
    return Loaded(spec, weights, size, path)


def _read_text(path: str) -> str:
    """The file's text, refusing (before reading it all) a file over the size limit and non-UTF-8 bytes."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_SPEC_FILE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SPEC_FILE_BYTES + 1)
    except OSError as error:
        raise UsageError(f"cannot read spec file {shown(path)}: {error.strerror or error}") from None
    if len(data) > MAX_SPEC_FILE_BYTES:
        raise UsageError(f"spec file {shown(path)} is over the limit of {MAX_SPEC_FILE_BYTES:,} bytes for a spec file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"spec file {shown(path)} is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); "
            f"expected spec JSON or a .safetensors weights file"
        ) from None


def _loaded(data: Any, path: str) -> Loaded:
    from upsample.spec import load_spec

    if not isinstance(data, dict):
        raise UsageError(
            f"spec file {shown(path)} holds a JSON {type(data).__name__}; expected an object: a spec, or "
            f'{{"spec": ..., "input_size": [h, w]}} as `upsample plan --json` writes'
        )
    wrapped = "spec" in data  # plan/inspect --json output: the other keys are derived and ignored
    try:
        spec = load_spec(data["spec"] if wrapped else data)
    except (ValueError, TypeError) as error:
        raise UsageError(f"spec file {shown(path)}: {error}") from None
    from upsample.head import HeadSpec

    size = data.get("input_size") if wrapped else None
    if size is not None:
        return Loaded(spec, None, _recorded_size(size, spec, path), path)
    return Loaded(spec, None, spec.input_size if isinstance(spec, HeadSpec) else None, path)


def _recorded_size(value: Any, spec: Any, path: str) -> tuple[int, ...]:
    rank = spec.spatial_dims
    items = value if isinstance(value, list) and len(value) == rank else [value] * rank
    if not all(type(item) is int and 0 < item <= limits.MAX_AXIS for item in items):
        raise UsageError(
            f"spec file {shown(path)} has input_size {shown(value)}; expected {rank} ints from 1 to "
            f"{limits.MAX_AXIS:,} (one per spatial axis)"
        )
    return tuple(items)


def refuse_overridden(args: argparse.Namespace, names: Sequence[str], path: str) -> None:
    """A flag that a spec file would override is an error, not silently ignored."""
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) not in (None, False)]
    if given:
        raise UsageError(
            f"{', '.join(given)} cannot be combined with the spec file {shown(path)}, which sets the whole spec; "
            f"give the file or the flags"
        )


def input_size(flag: Any, loaded: Loaded | None, spec: Any) -> tuple[tuple[int, ...], str]:
    """The input size to use and where it came from: ``--input-size``, else the file's, else 1 on every axis of
    ``spec``."""
    if flag is not None:
        try:
            return as_axes("--input-size", flag, spec.spatial_dims, 1), "--input-size"
        except ValueError as error:
            raise UsageError(f"{error} (the spec is {spec.spatial_dims}-D)") from None
    if loaded is not None and loaded.input_size is not None:
        return loaded.input_size, f"recorded in {shown(loaded.path)}"
    return (1,) * spec.spatial_dims, "default; give --input-size for another"


# --- specs from flags ------------------------------------------------------------------------


def _refuse_for_mode(args: argparse.Namespace, mode: str, names: Sequence[str]) -> None:
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name, None) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} does not apply to --mode {mode}")


def planned_spec(args: argparse.Namespace) -> Any:
    """The spec of ``--mode`` that maps ``--input-size`` to ``--size`` (``plan``, ``check``)."""
    from upsample import plans

    mode = args.mode or "transposed"
    if mode != "resize":
        _refuse_for_mode(args, mode, ["method"])
    return plans.for_size(
        mode,
        args.channels,
        args.size,
        out_channels=args.out_channels,
        input_size=1 if args.input_size is None else args.input_size,
        kernel_size=args.kernel,
        residual=args.residual,
        method=args.method,
        use_bias=not args.no_bias,
        spatial_dims=args.spatial_dims,
    )


def flag_spec(args: argparse.Namespace) -> Any:
    """The spec ``inspect``'s flags describe."""
    from upsample.spec import UpsampleSpec

    mode = args.mode or "transposed"
    if args.channels is None or (mode == "transposed" and args.kernel is None):
        needed = "--channels and --kernel" if mode == "transposed" else "--channels"
        raise UsageError(f"give a spec file (JSON or .safetensors) or at least {needed}")
    if mode == "transposed":
        _refuse_for_mode(args, mode, ["scale", "method"])
        return UpsampleSpec(
            args.channels,
            args.out_channels,
            kernel_size=args.kernel,
            stride=1 if args.stride is None else args.stride,
            padding=0 if args.padding is None else args.padding,
            output_padding=args.output_padding,
            residual=args.residual,
            use_bias=not args.no_bias,
            spatial_dims=args.spatial_dims,
        )
    _refuse_for_mode(args, mode, ["stride", "padding", "output_padding"] + (["method"] if mode == "subpixel" else []))
    from upsample.conv_specs import ResizeSpec, SubpixelSpec

    common: dict[str, Any] = {"kernel_size": 3 if args.kernel is None else args.kernel, "residual": args.residual}
    common |= {"scale": 2 if args.scale is None else args.scale, "use_bias": not args.no_bias}
    common |= {"spatial_dims": args.spatial_dims}
    if mode == "subpixel":
        return SubpixelSpec(args.channels, args.out_channels, **common)
    return ResizeSpec(args.channels, args.out_channels, method=args.method or "nearest", **common)


# --- what the command would allocate -----------------------------------------------------------


def refuse_big_map(spec: Any, size: tuple[int, ...], limit: int, what: str) -> None:
    """Refuse a coverage map (or picture of one) over ``limit`` pixels before computing it."""
    out = spec.output_size(size)
    if math.prod(out) > limit:
        cause = limits.spec_cause(spec, lambda s, n: math.prod(s.output_size(n)), limit, size)
        raise UsageError(
            f"{what} would be {size_text(out)} = {math.prod(out):,} pixels for a {size_text(size)} input, over "
            f"the limit of {limit:,}{f' (because of {cause})' if cause else ''}; use a smaller --input-size, "
            f"--kernel, --stride or --scale"
        )


def refuse_big_check(spec: Any, batch: int, size: tuple[int, ...]) -> None:
    """Refuse weights, input or output arrays over :data:`MAX_CHECK_VALUES` values before making any."""
    out = spec.output_size(size)
    full = spec.full_size(size) if hasattr(spec, "full_size") else out  # a transposed conv computes it all
    channels = max(spec.in_channels, spec.out_channels, getattr(spec, "conv_channels", 0))
    counts = {
        "weights": (spec.num_params, "use fewer --channels or a smaller --size or --kernel"),
        "input": (batch * math.prod(size) * spec.in_channels, "use a smaller --batch or --input-size"),
        "output": (batch * max(math.prod(out), math.prod(full)) * channels, "use a smaller --batch or --size"),
    }
    for what, (count, hint) in counts.items():
        if count > MAX_CHECK_VALUES:
            cause = limits.spec_cause(spec, limits.weight_count, MAX_CHECK_VALUES) if what == "weights" else ""
            raise UsageError(
                f"the {what} would have {count:,} values ({count * 4 / 2**20:,.0f} MiB as float32), over check's "
                f"limit of {MAX_CHECK_VALUES:,}{f' (because of {cause})' if cause else ''}; {hint}"
            )


def writable_path(path: str, flag: str, suffixes: Sequence[str]) -> str:
    """Refuse an output path that cannot be a picture file, before the work that fills it (matplotlib
    would pick the format from the suffix, or append ``.png`` to a name without one)."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {shown(path)} is a directory; give a file name such as picture{suffixes[0]}")
    if not path.lower().endswith(tuple(suffixes)):
        raise UsageError(f"{flag} {shown(path)} must end in {' or '.join(suffixes)}")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        why = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise UsageError(f"{flag} {shown(path)}: the folder {shown(parent)} {why}")
    return path
