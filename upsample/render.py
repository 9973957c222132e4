"""Pictures of a coverage map: a compact text heat map for the terminal and a PNG (matplotlib). A 2-D map is
drawn as it is, a 1-D map as a strip one pixel high, a 3-D map as its three central slices side by side."""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING

import numpy as np

from upsample.coverage_report import CoverageReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_COLUMNS = 72
_DIGITS = "123456789"
DEAD_COLOUR = "#d62728"


def views(counts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The 2-D pictures of a coverage map of any rank, each with its label: the map itself (2-D), a strip one
    pixel high (1-D), or the slices through the centre across each axis (3-D)."""
    if counts.ndim == 1:
        return [("", counts[None, :])]
    if counts.ndim == 2:
        return [("", counts)]
    labels = ("depth", "height", "width")
    return [
        (f"{labels[a]} = {counts.shape[a] // 2} (of {counts.shape[a]})", np.take(counts, counts.shape[a] // 2, axis=a))
        for a in range(3)
    ]


def text_map(counts: np.ndarray, max_columns: int = MAX_COLUMNS) -> str:
    """:func:`text_block` of each of the map's :func:`views`, under its label."""
    blocks = []
    for label, view in views(counts):
        blocks.append(f"{label}:\n{text_block(view, max_columns)}" if label else text_block(view, max_columns))
    return "\n".join(blocks)


def text_block(counts: np.ndarray, max_columns: int = MAX_COLUMNS) -> str:
    """One character per pixel: ``#`` dead, ``1``..``9`` counts, ``+`` ten or more.

    Maps wider or taller than ``max_columns`` are shown in blocks, each drawn as its smallest count,
    so a dead pixel is never hidden by a live neighbour.
    """
    height, width = counts.shape
    step = max(1, -(-max(height, width) // max_columns))
    lines = []
    for top in range(0, height, step):
        row = []
        for left in range(0, width, step):
            value = int(counts[top : top + step, left : left + step].min())
            row.append("#" if value == 0 else _DIGITS[value - 1] if value < 10 else "+")
        lines.append("".join(row))
    if step > 1:
        lines.append(f"(each character is a {step}x{step} block, shown as its smallest count)")
    return "\n".join(lines)


def legend() -> str:
    return "legend: # dead (bias only), 1-9 input taps reaching the pixel, + ten or more"


def coverage_figure(counts: np.ndarray, report: CoverageReport, title: str) -> Figure:
    """The coverage map as a matplotlib figure, one panel per :func:`views`: one colour per tap count, dead
    pixels red.

    ``title`` (the layer) heads the figure; under it ``report.verdict``, in red unless ``report.ok``.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.colors import BoundaryNorm
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError('--png needs matplotlib: pip install "upsample[plot]"') from None
    panels = views(counts)
    height, width = max(view.shape[0] for _, view in panels), max(view.shape[1] for _, view in panels)
    live = counts[counts > 0]
    low, high = (int(live.min()), int(live.max())) if live.size else (1, 1)
    # Tap counts are integers: one colour per count, boundaries halfway between, ticks on the counts.
    levels = high - low + 1
    cmap = colormaps["viridis"].resampled(levels).with_extremes(bad=DEAD_COLOUR)
    norm = BoundaryNorm(np.arange(low - 0.5, high + 1.5), levels)
    side = min(6.0, max(3.5, 0.25 * max(height, width)))
    strip = counts.ndim == 1
    tall = 1.5 if strip else side
    fig = Figure(figsize=(len(panels) * side + 2.5, tall + 1.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (label, view) in zip(axes, panels, strict=True):
        image = ax.imshow(
            np.ma.masked_equal(view, 0),
            cmap=cmap,
            norm=norm,
            interpolation="nearest",
            aspect="auto" if strip else "equal",
        )
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 4, 5, 10], integer=True, min_n_ticks=1))
        if strip:
            ax.set_xlabel("length (red: dead pixels)")
            ax.set_yticks([])
        elif label:  # a slice of a volume: the other two axes, in order
            rows, cols = (name for name in ("depth", "height", "width") if not label.startswith(name))
            ax.set_title(label, fontsize=8)
            ax.set_xlabel(f"{cols} (red: dead pixels)")
            ax.set_ylabel(rows)
    colorbar = fig.colorbar(image, ax=list(axes), shrink=0.9, ticks=np.arange(low, high + 1, -(-levels // 8)))
    colorbar.set_label("input taps reaching the pixel", fontsize=9)
    colorbar.ax.minorticks_off()
    if counts.ndim == 2:
        axes[0].set_xlabel("width (red: dead pixels)")
        axes[0].set_ylabel("height")
    # Titles wrapped to the figure's and the map's width (about 12 characters an inch at 10 pt, 14 at 8 pt).
    # One map: the verdict is its title; three slices: the verdict goes under the figure's title.
    width_inches = len(panels) * side + 2.5
    colour = "black" if report.ok else DEAD_COLOUR
    if len(panels) == 1:
        fig.suptitle(textwrap.fill(title, width=int(12 * width_inches)), fontsize=10)
        axes[0].set_title(textwrap.fill(report.verdict, width=int(14 * side)), fontsize=8, color=colour)
    else:
        fig.suptitle(textwrap.fill(title, width=int(12 * width_inches)), fontsize=10)
        fig.text(0.5, 0.0, textwrap.fill(report.verdict, width=int(14 * width_inches)), ha="center", va="bottom",
                 fontsize=8, color=colour)  # fmt: skip
    return fig


def save_png(counts: np.ndarray, report: CoverageReport, path: str | os.PathLike[str], title: str) -> None:
    """Save ``coverage_figure`` as a PNG."""
    coverage_figure(counts, report, title).savefig(os.fspath(path), dpi=100)
