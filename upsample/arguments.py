"""Checking and normalising the integer arguments every spec kind takes: an int, or one int per spatial axis
(tuple, list or 1-d array), and the number of spatial axes a spec has. Errors name the argument and repeat what
was given (bounded in length)."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from upsample.messages import shown

Pair = tuple[int, int]
IntOrPair = int | Sequence[int]
Axes = tuple[int, ...]
"""One int per spatial axis."""
IntOrAxes = int | Sequence[int]

SPATIAL_DIMS = (1, 2, 3)
AXIS_NAMES: dict[int, tuple[str, ...]] = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
"""The words messages use for each axis, per number of spatial axes."""
_TUPLE_WORDS = {1: "a (length,) tuple", 2: "an (h, w) pair", 3: "a (d, h, w) triple"}


def as_int(name: str, value: Any, minimum: int | None) -> int:
    """``value`` as an int (not a bool) that is at least ``minimum``; errors repeat what was given."""
    if getattr(value, "ndim", 0) != 0 or isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        kind = "a bool" if isinstance(value, bool) or type(value).__name__ == "bool_" else type(value).__name__
        raise TypeError(f"{name} must be an int, got {shown(value)} ({kind})")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {shown(value)} ({type(value).__name__})") from None
    if minimum is not None and number < minimum:
        allowed = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {allowed}, got {shown(number)}")
    return number


def as_groups(groups: Any, in_channels: int, out_channels: int) -> int:
    """``groups`` as a positive int that divides both channel counts (each group maps ``in_channels / groups``
    inputs to ``out_channels / groups`` outputs, as in torch and ONNX)."""
    number = as_int("groups", groups, 1)
    if in_channels % number or out_channels % number:
        raise ValueError(
            f"groups must divide in_channels and out_channels, got groups={number} with in_channels="
            f"{in_channels} and out_channels={out_channels}"
        )
    return number


def sequence_items(value: Any) -> list[Any] | None:
    """A tuple, list or 1-d array as a list; ``None`` for anything else (a scalar)."""
    if isinstance(value, (tuple, list)):
        return list(value)
    if getattr(value, "ndim", None) == 1 and hasattr(value, "tolist"):
        return list(value.tolist())
    return None


def as_axes(name: str, value: Any, rank: int, minimum: int | None) -> Axes:
    """An int (the same on every axis) or ``rank`` ints (tuple, list or 1-d array) as a tuple of ``rank`` ints."""
    items = sequence_items(value)
    if items is not None:
        if len(items) != rank:
            raise ValueError(
                f"{name} must be an int or {_TUPLE_WORDS[rank]}, got {shown(value)} with {len(items)} items"
            )
        return tuple(as_int(f"{name}[{a}]", item, minimum) for a, item in enumerate(items))
    return (as_int(name, value, minimum),) * rank


def as_pair(name: str, value: Any, minimum: int | None) -> Pair:
    """An int or an ``(h, w)`` pair of ints (tuple, list or 1-d array) as an ``(h, w)`` pair."""
    return as_axes(name, value, 2, minimum)  # type: ignore[return-value]


def spatial_rank(spatial_dims: Any, per_axis: Mapping[str, Any]) -> int:
    """The number of spatial axes of a spec: ``spatial_dims`` when given, else the length of the per-axis
    arguments given as tuples (``per_axis``: argument name -> value; ints and ``None`` say nothing), else 2.
    Tuples of different lengths, or of another length than ``spatial_dims``, are an error naming both."""
    lengths = {}
    for name, value in per_axis.items():
        items = None if isinstance(value, str) else sequence_items(value)
        if items is not None:
            lengths[name] = len(items)
    if spatial_dims is not None:
        rank = as_int("spatial_dims", spatial_dims, 1)
        if rank not in SPATIAL_DIMS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {shown(spatial_dims)}")
        for name, length in lengths.items():
            if length != rank:
                raise ValueError(
                    f"{name} has {length} items but spatial_dims={rank}: give {name} as an int or "
                    f"{_TUPLE_WORDS[rank]}, or leave spatial_dims out"
                )
        return rank
    if not lengths:
        return 2
    (first, rank), *others = lengths.items()
    for name, length in others:
        if length != rank:
            raise ValueError(
                f"{first} has {rank} items and {name} has {length}: per-axis arguments need one item per "
                f"spatial axis, the same number in each (or an int for every axis)"
            )
    if rank not in SPATIAL_DIMS:
        raise ValueError(f"{first} has {rank} items: a spec has 1, 2 or 3 spatial axes, got {shown(per_axis[first])}")
    return rank


def axis_names(rank: int) -> tuple[str, ...]:
    """``("length",)``, ``("height", "width")`` or ``("depth", "height", "width")``."""
    return AXIS_NAMES[rank]


def size_text(size: Sequence[int]) -> str:
    """A size as people write it: ``16``, ``4x4``, ``8x8x8``."""
    return "x".join(str(n) for n in size)
