"""``CoverageReport``: what a spec's ``diagnose`` found for one input size, and its one-line verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from upsample.arguments import Axes, size_text

if TYPE_CHECKING:
    import numpy as np

    from upsample.blur import Blur


@dataclasses.dataclass(frozen=True)
class CoverageReport:
    """What :meth:`UpsampleSpec.diagnose` found for one input size."""

    input_size: Axes
    output_size: Axes
    dead: int
    """Output pixels no input pixel reaches (they carry the bias alone)."""
    live: int
    uneven_axes: tuple[str, ...]
    """Axes whose interior overlap is not uniform (checkerboard risk: kernel not divisible by stride)."""
    dilation_holes: tuple[str, ...] = ()
    """Axes where a dilated kernel leaves dead pixels between its taps (even where the kernel spans the stride)."""
    idle_strides: tuple[str, ...] = ()
    """Axes with one input pixel and a stride > 1: the stride has no effect there (the torch trap)."""
    not_upsampling: bool = False
    """The output is no larger than the input along any axis: no upsampling at all."""
    suggestion: str = ""
    """What the user probably meant, when the stride or the size says so (empty otherwise)."""
    blurred: bool = False
    """The layer ends in a blur, and the counts and the overlap are those after it."""

    @property
    def ok(self) -> bool:
        """No dead pixels, even overlap, and a layer that upsamples with every stride in effect."""
        return self.dead == 0 and not self.uneven_axes and not self.idle_strides and not self.not_upsampling

    @property
    def verdict(self) -> str:
        """One line a person can act on."""
        total = self.dead + self.live
        parts = []
        if self.dead:
            parts.append(f"{self.dead} of {total} output pixels are dead (never reached by the input; bias only)")
        if self.uneven_axes:
            remains = " that the blur does not even out" if self.blurred else ""
            parts.append(
                f"uneven overlap along {' and '.join(self.uneven_axes)}{remains} (checkerboard risk: kernel not "
                f"divisible by stride)"
            )
        if self.dilation_holes:
            parts.append(
                f"the dilation leaves holes between the kernel's taps along {' and '.join(self.dilation_holes)} "
                f"(dead pixels even though the kernel spans the stride)"
            )
        if self.not_upsampling:
            source, out = size_text(self.input_size), size_text(self.output_size)
            parts.append(f"not upsampling: a {source} input gives a {out} output")
        if self.idle_strides:
            parts.append(
                f"the stride has no effect along {' and '.join(self.idle_strides)} for a 1-pixel input "
                f"(output = kernel - crops)"
            )
        if not parts:
            evened = " after the blur" if self.blurred else ""
            parts.append(f"ok: all {total} output pixel{'s' if total > 1 else ''} live, even overlap{evened}")
        elif self.dead and not self.suggestion:
            parts.append("UpsampleSpec.for_size() picks parameters with every pixel live")
        if self.suggestion:
            parts.append(self.suggestion)
        return "; ".join(parts)


def outer(axes: Sequence[Sequence[int]]) -> np.ndarray:
    """The outer product of per-axis counts: an int64 array with one axis per list."""
    import numpy as np

    result = np.ones((), dtype=np.int64)
    for axis in axes:
        result = np.multiply.outer(result, np.asarray(axis, dtype=np.int64))
    return result


def holes(counts: Sequence[int]) -> bool:
    """Whether an axis's coverage has a dead pixel between two live ones."""
    live = [position for position, count in enumerate(counts) if count]
    return bool(live) and any(count == 0 for count in counts[live[0] : live[-1]])


def blurred(blur: Blur | None, axes: tuple[list[int], ...]) -> tuple[list[int], ...]:
    """Per-axis coverage after ``blur`` (each pixel sums the counts its taps read); unchanged without one."""
    return axes if blur is None else tuple(blur.axis_coverage(a, counts) for a, counts in enumerate(axes))


def uneven_interior(blur: Blur | None, axis: int, counts: list[int], interior: Sequence[int]) -> bool:
    """Whether the overlap along ``axis`` differs between the ``interior`` pixels (away from the borders): the
    counts themselves, or after ``blur`` its weighted sums over pixels whose taps read the interior alone."""
    if blur is None:
        return len({counts[p] for p in interior if counts[p] > 0}) > 1
    weighted = blur.axis_weighted(axis, [float(count) for count in counts])
    inside = set(interior)
    kept = [p for p in range(len(counts)) if blur.reads_within(axis, len(counts), p, inside)]
    return len({round(weighted[p], 9) for p in kept if weighted[p]}) > 1
