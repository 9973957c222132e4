"""Limits on what one call may allocate, checked before anything is allocated.

A spec is a few ints, so a small input can ask for a huge amount of work (a kernel of 10**9 taps, a
coverage map of 10**12 pixels). The spec, the weights and the backends check these counts first and
raise ``ValueError`` saying what would have been allocated. The limits are far above any real
upsampling layer (a 1x1 -> 1024x1024 head, a 512 -> 512 channel 16x16 kernel).
"""

from __future__ import annotations

MAX_AXIS = 1 << 20
"""Pixels along one output axis that coverage and diagnosis compute (O(H + W) work)."""
MAX_PIXELS = 1 << 26
"""Pixels of a coverage map (an int64 array: 512 MiB at the limit)."""
MAX_WEIGHT_VALUES = 1 << 28
"""Values in one layer's weights (1 GiB of float32 at the limit)."""


def check_count(what: str, count: int, limit: int, unit: str, bytes_per: int = 0) -> None:
    """Raise ``ValueError`` naming ``what`` when ``count`` exceeds ``limit``."""
    if count > limit:
        size = f" ({count * bytes_per / 2**30:,.1f} GiB)" if bytes_per else ""
        raise ValueError(f"{what} would be {count:,} {unit}{size}, over the limit of {limit:,} (upsample.limits)")


def check_weights(spec: object) -> None:
    """Refuse a spec whose weights would exceed :data:`MAX_WEIGHT_VALUES`, before a framework allocates them."""
    shapes = [shape for shape in spec.weight_shapes().values() if shape is not None]  # type: ignore[attr-defined]
    count = 0
    for shape in shapes:
        size = 1
        for dim in shape:
            size *= dim
        count += size
    check_count(f"the weights of {type(spec).__name__}", count, MAX_WEIGHT_VALUES, "values", 4)
