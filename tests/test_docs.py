"""Every ``python`` code block in README.md and docs/*.md runs: each file's blocks in order, as one
script, in a fresh interpreter (Keras on TensorFlow) inside a temporary folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cases import require_backend, require_library

from upsample import UpsampleSpec

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def script(page: Path) -> str:
    return "\n".join(BLOCK.findall(page.read_text(encoding="utf-8")))


def test_pages_have_snippets() -> None:
    assert sum(bool(script(page)) for page in PAGES) >= 5


@pytest.mark.parametrize("page", [p for p in PAGES if script(p)], ids=lambda p: p.name)
def test_snippets_run(page: Path, tmp_path: Path) -> None:
    code = script(page)
    for name, needle in (("torch", "torch"), ("keras", "keras"), ("flax", "flax")):
        if needle in code:
            require_backend(name)
    for library in ("monai", "diffusers"):
        if f"from {library}" in code or f"import {library}" in code:
            require_library(library)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{page.name} snippets failed:\n{result.stderr[-3000:]}"


def _shown(ticks: Any, limits: tuple[float, float]) -> list[float]:
    low, high = sorted(limits)
    return [float(t) for t in ticks if low <= t <= high]


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (UpsampleSpec(64, 64, kernel_size=3, stride=32, padding=1), 1),  # torch's trap: one pixel, not ok
        (UpsampleSpec(64, kernel_size=3, stride=2), 8),  # checkerboard: counts 1, 2 and 4
    ],
    ids=["torch-trap", "checkerboard"],
)
def test_coverage_picture(spec: UpsampleSpec, size: int) -> None:
    """The why-a-spec pictures: integer ticks on the map and its colorbar, the whole verdict, red unless ok."""
    pytest.importorskip("matplotlib")
    from upsample.render import DEAD_COLOUR, coverage_figure

    counts, report = spec.coverage(size), spec.diagnose(size)
    fig = coverage_figure(counts, report, "title")
    fig.draw_without_rendering()
    image_axes, colorbar_axes = fig.axes
    height, width = counts.shape
    for ticks, limits, pixels in (
        (image_axes.get_xticks(), image_axes.get_xlim(), width),
        (image_axes.get_yticks(), image_axes.get_ylim(), height),
    ):
        shown = _shown(ticks, limits)
        assert shown and all(t == int(t) and 0 <= t < pixels for t in shown), shown
    live = counts[counts > 0]
    colorbar_ticks = _shown(colorbar_axes.get_yticks(), colorbar_axes.get_ylim())
    assert colorbar_ticks[0] == live.min() and colorbar_ticks[-1] == live.max()
    assert all(t == int(t) for t in colorbar_ticks), colorbar_ticks
    assert image_axes.get_title().split() == report.verdict.split()
    assert (image_axes.title.get_color() == DEAD_COLOUR) == (not report.ok)


def test_bench_picture_labels() -> None:
    """bench.png: plain-number ratio ticks (no 2x10^0), horizontal labels naming every backend and shape."""
    pytest.importorskip("matplotlib")
    from upsample.bench import figure

    ratios = {"torch": (0.004, 1.3), "keras/jax": (0.98, 14.8)}
    rows = [
        {"backend": backend, "shape": shape, "mode": mode, "ours_over_native": native, "ours_over_matmul": matmul}
        for backend, (native, matmul) in ratios.items()
        for shape in ("B64 100->512 1x1->4x4", "B16 256->128 8x8->16x16")
        for mode in ("forward", "forward_backward")
    ]
    fig = figure(rows)
    fig.draw_without_rendering()
    for axes in fig.axes:
        labels = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
        assert labels and all(float(label.replace("\N{MINUS SIGN}", "-")) > 0 for label in labels), labels
        low, high = axes.get_xlim()
        assert low <= 0.004 and high >= 14.8
    names = [(t.get_text(), t.get_rotation()) for t in fig.axes[0].get_yticklabels()]
    assert {name for name, _ in names} == {*ratios, "B64 100->512 1x1->4x4", "B16 256->128 8x8->16x16"}
    assert all(rotation == 0 for _, rotation in names)
