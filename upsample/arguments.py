"""Checking and normalising the integer arguments every spec kind takes: an int, or an ``(h, w)`` pair of ints
(tuple, list or 1-d array). Errors name the argument and repeat what was given (bounded in length)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from upsample.messages import shown

Pair = tuple[int, int]
IntOrPair = int | Sequence[int]


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


def sequence_items(value: Any) -> list[Any] | None:
    """A tuple, list or 1-d array as a list; ``None`` for anything else (a scalar)."""
    if isinstance(value, (tuple, list)):
        return list(value)
    if getattr(value, "ndim", None) == 1 and hasattr(value, "tolist"):
        return list(value.tolist())
    return None


def as_pair(name: str, value: Any, minimum: int | None) -> Pair:
    """An int or an ``(h, w)`` pair of ints (tuple, list or 1-d array) as an ``(h, w)`` pair."""
    items = sequence_items(value)
    if items is not None:
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {shown(value)} with {len(items)} items")
        return (as_int(f"{name}[0]", items[0], minimum), as_int(f"{name}[1]", items[1], minimum))
    number = as_int(name, value, minimum)
    return (number, number)
