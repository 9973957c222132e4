"""``CoverageReport``: what a spec's ``diagnose`` found for one input size, and its one-line verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from upsample.arguments import Axes, size_text

if TYPE_CHECKING:
    import numpy as np


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
            parts.append(
                f"uneven overlap along {' and '.join(self.uneven_axes)} (checkerboard risk: kernel not "
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
            parts.append(f"ok: all {total} output pixel{'s' if total > 1 else ''} live, even overlap")
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
