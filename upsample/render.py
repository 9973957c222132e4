"""Pictures of a coverage map: a compact text heat map for the terminal and a PNG (matplotlib)."""

from __future__ import annotations

import os

import numpy as np

from upsample.spec import CoverageReport

MAX_COLUMNS = 72
_DIGITS = "123456789"


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


def save_png(counts: np.ndarray, report: CoverageReport, path: str | os.PathLike[str], title: str) -> None:
    """Save the coverage map as a picture; dead pixels are red."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('--png needs matplotlib: pip install "upsample[plot]"') from None
    masked = np.ma.masked_equal(counts, 0)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#d62728")
    height, width = counts.shape
    size = min(8.0, max(3.0, 0.25 * max(height, width)))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(masked, cmap=cmap, interpolation="nearest", vmin=1, vmax=max(1, int(counts.max())))
    fig.colorbar(image, ax=ax, label="input taps reaching the pixel")
    ax.set_title(f"{title}\n{report.verdict}", fontsize=8, wrap=True)
    ax.set_xlabel("width (red: dead pixels)")
    ax.set_ylabel("height")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
