"""Limits on what one call may allocate, checked before anything is allocated.

A spec is a few ints, so a small input can ask for a huge amount of work (a kernel of 10**9 taps, a
coverage map of 10**12 pixels). The spec, the weights and the backends check these counts first and
raise ``ValueError`` saying what would have been allocated, the limit, and which argument (with its
value) makes the count that large. The limits are far above any real upsampling layer (a 1x1 ->
1024x1024 head, a 512 -> 512 channel 16x16 kernel).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from upsample.arguments import AXIS_NAMES
from upsample.messages import shown

MAX_AXIS = 1 << 20
"""Pixels along one output axis that coverage and diagnosis compute (O(H + W) work)."""
MAX_PIXELS = 1 << 26
"""Pixels of a coverage map (an int64 array: 512 MiB at the limit)."""
MAX_WEIGHT_VALUES = 1 << 28
"""Values in one layer's weights (1 GiB of float32 at the limit)."""

_NAMES = {MAX_AXIS: "MAX_AXIS", MAX_PIXELS: "MAX_PIXELS", MAX_WEIGHT_VALUES: "MAX_WEIGHT_VALUES"}

MODEST: dict[str, Any] = {
    "in_channels": 1,
    "out_channels": 1,
    "kernel_size": 1,
    "dilation": 1,
    "stride": 1,
    "scale": 1,
    "size": 1,
    "crops": (0, 0),
}
"""Spec arguments that can make a count large, each with a value that keeps it small (per-axis arguments: the
value on each axis): a cause is an argument whose modest value alone brings the count within the limit."""
PER_AXIS = ("kernel_size", "dilation", "stride", "scale", "size", "crops")


def _rank(spec: Any) -> int:
    return int(getattr(spec, "spatial_dims", 2))


def modest(spec: Any, name: str) -> Any:
    """The modest value of argument ``name`` for ``spec`` (one per spatial axis for per-axis arguments)."""
    return (MODEST[name],) * _rank(spec) if name in PER_AXIS else MODEST[name]


def check_count(what: str, count: int, limit: int, unit: str, bytes_per: int = 0, cause: str = "") -> None:
    """Raise ``ValueError`` naming ``what``, the limit and ``cause`` (see :func:`spec_cause`) when ``count``
    exceeds ``limit``."""
    if count > limit:
        size = f" ({count * bytes_per / 2**30:,.1f} GiB)" if bytes_per else ""
        name = f"upsample.limits.{_NAMES[limit]}" if limit in _NAMES else "upsample.limits"
        because = f"; because of {cause}" if cause else ""
        raise ValueError(f"{what} would be {count:,} {unit}{size}, over the limit of {limit:,} ({name}){because}")


def compact(value: Any) -> str:
    """A spec argument as a user may write it: ``(n, n)`` (the same int on every axis) as ``n``; bounded by
    ``messages.shown``."""
    if isinstance(value, tuple) and len(value) >= 2 and len(set(value)) == 1 and isinstance(value[0], int):
        return shown(value[0])
    return shown(value)


def spec_cause(
    spec: Any,
    count: Callable[[Any, Any], int],
    limit: int,
    input_size: Any = None,
    input_text: str | None = None,
) -> str:
    """Which argument makes ``count(spec, input_size)`` exceed ``limit``, as ``name=value`` text.

    Each argument of :data:`MODEST` the spec has (and ``input_size``, when given) is set alone to its modest
    value; those that bring the count within the limit are the cause. If none does alone, the cause is
    every argument whose modest value lowers the count, together. ``input_text`` names the input in the
    message (default ``input_size=...``). Empty when nothing is found.
    """
    candidates: dict[str, tuple[str, Callable[[], int]]] = {}
    for name in MODEST:
        small = modest(spec, name)
        value = getattr(spec, name, small)
        if value is not None and value != small:  # None: the argument is not in use (a resize's scale or size)
            text = f"{name}={compact(value)}" + (" (padding and output_padding as crops)" if name == "crops" else "")
            candidates[name] = (text, _with(spec, name, small, count, input_size))
    ones = (1,) * _rank(spec)
    if input_size is not None and tuple(input_size) != ones:
        text = input_text if input_text is not None else f"input_size={compact(tuple(input_size))}"
        candidates["input_size"] = (text, lambda: _counted(count, spec, ones))
    full = _counted(count, spec, input_size)
    lowered = {name: recount() for name, (_, recount) in candidates.items()}
    alone = [name for name, value in lowered.items() if value <= limit]
    names = alone or [name for name, value in lowered.items() if value < full]
    return _listed([candidates[name][0] for name in names])


def _with(spec: Any, name: str, value: Any, count: Callable[[Any, Any], int], input_size: Any) -> Callable[[], int]:
    def recount() -> int:
        changed = copy.copy(spec)  # a frozen dataclass: set the one field on a copy, no validation rerun
        object.__setattr__(changed, name, value)
        return _counted(count, changed, input_size)

    return recount


def _counted(count: Callable[[Any, Any], int], spec: Any, input_size: Any) -> int:
    try:
        return count(spec, (1,) * _rank(spec) if input_size is None else input_size)
    except ValueError:  # e.g. an empty output: certainly within the limit
        return 0


def _listed(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} and {parts[-1]} together"


def weight_count(spec: Any, input_size: Any = None) -> int:
    """Values in ``spec``'s weights (every array of ``spec.weight_shapes()``)."""
    count = 0
    for shape in spec.weight_shapes().values():
        if shape is not None:
            size = 1
            for dim in shape:
                size *= dim
            count += size
    return count


def check_weights(spec: object) -> None:
    """Refuse a spec whose weights would exceed :data:`MAX_WEIGHT_VALUES`, before a framework allocates them,
    naming the argument that makes them so large."""
    count = weight_count(spec)
    if count > MAX_WEIGHT_VALUES:
        cause = spec_cause(spec, weight_count, MAX_WEIGHT_VALUES)
        check_count(f"the weights of {type(spec).__name__}", count, MAX_WEIGHT_VALUES, "values", 4, cause)


def check_output(spec: Any, input_size: Sequence[int], input_text: str | None = None) -> None:
    """Refuse an output over :data:`MAX_AXIS` pixels along an axis for ``input_size``, naming the cause."""
    out = spec.output_size(tuple(input_size))
    for a, axis in enumerate(AXIS_NAMES[len(out)]):
        if out[a] > MAX_AXIS:

            def length(changed: Any, size: Sequence[int], a: int = a) -> int:
                return int(changed.output_size(tuple(size))[a])

            cause = spec_cause(spec, length, MAX_AXIS, input_size, input_text)
            check_count(f"the output along {axis}", out[a], MAX_AXIS, "pixels", cause=cause)


def check_map(spec: Any, input_size: Sequence[int]) -> None:
    """Refuse a coverage map over :data:`MAX_PIXELS` pixels for ``input_size``, naming the cause."""
    pixels = math.prod(spec.output_size(tuple(input_size)))
    if pixels > MAX_PIXELS:
        cause = spec_cause(spec, lambda s, size: math.prod(s.output_size(tuple(size))), MAX_PIXELS, input_size)
        check_count("the coverage map", pixels, MAX_PIXELS, "pixels", cause=cause)
