"""Pictures of a coverage map: a compact text heat map for the terminal and a PNG (matplotlib)."""

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


def text_map(counts: np.ndarray, max_columns: int = MAX_COLUMNS) -> str:
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
    """The coverage map as a matplotlib figure: one colour per tap count, dead pixels red.

    ``title`` (the layer) heads the figure; under it ``report.verdict``, in red unless ``report.ok``.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.colors import BoundaryNorm
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError('--png needs matplotlib: pip install "upsample[plot]"') from None
    height, width = counts.shape
    live = counts[counts > 0]
    low, high = (int(live.min()), int(live.max())) if live.size else (1, 1)
    # Tap counts are integers: one colour per count, boundaries halfway between, ticks on the counts.
    levels = high - low + 1
    cmap = colormaps["viridis"].resampled(levels).with_extremes(bad=DEAD_COLOUR)
    norm = BoundaryNorm(np.arange(low - 0.5, high + 1.5), levels)
    side = min(6.0, max(3.5, 0.25 * max(height, width)))
    fig = Figure(figsize=(side + 2.5, side + 1.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_equal(counts, 0), cmap=cmap, norm=norm, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.9, ticks=np.arange(low, high + 1, -(-levels // 8)))
    colorbar.set_label("input taps reaching the pixel", fontsize=9)
    colorbar.ax.minorticks_off()
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 4, 5, 10], integer=True, min_n_ticks=1))
    # Titles wrapped to the figure's and the map's width (about 12 characters an inch at 10 pt, 14 at 8 pt).
    fig.suptitle(textwrap.fill(title, width=int(12 * (side + 2.5))), fontsize=10)
    verdict = textwrap.fill(report.verdict, width=int(14 * side))
    ax.set_title(verdict, fontsize=8, color="black" if report.ok else DEAD_COLOUR)
    ax.set_xlabel("width (red: dead pixels)")
    ax.set_ylabel("height")
    return fig


def save_png(counts: np.ndarray, report: CoverageReport, path: str | os.PathLike[str], title: str) -> None:
    """Save ``coverage_figure`` as a PNG."""
    coverage_figure(counts, report, title).savefig(os.fspath(path), dpi=100)
