"""``upsample bench``: native layer vs ours vs a plain matmul of the same FLOPs, side by side.

For every backend and shape the three variants are timed interleaved (round-robin, order rotated each
round) after warm-up, forward and forward+backward, and the medians are reported with GFLOP/s and
the ratios ours/native and ours/matmul. Keras runs once per Keras backend, each in a subprocess. The
per-framework callables come from ``upsample.runners.<framework>.bench_callables``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from upsample.check import TARGETS, Target, installed
from upsample.spec import UpsampleSpec

VARIANTS = ("native", "ours", "matmul")
MODES = ("forward", "forward_backward")


@dataclasses.dataclass(frozen=True)
class Shape:
    """A benchmark case: batch, channels, input size and output size (spec chosen by ``for_size``)."""

    batch: int
    in_channels: int
    out_channels: int
    size: int
    input_size: int = 1

    @property
    def spec(self) -> UpsampleSpec:
        return UpsampleSpec.for_size(
            self.in_channels, self.size, out_channels=self.out_channels, input_size=self.input_size
        )

    @property
    def label(self) -> str:
        return (
            f"B{self.batch} {self.in_channels}->{self.out_channels} "
            f"{self.input_size}x{self.input_size}->{self.size}x{self.size}"
        )


# The five shapes of issue 7 (kernel N, stride 1 from 1x1), DCGAN's projection (z=100 -> 4x4x1024),
# and a non-1x1 case (DCGAN-style k4 s2 p1, 8x8 -> 16x16).
SHAPES = (
    Shape(64, 100, 512, 4),
    Shape(64, 256, 256, 8),
    Shape(32, 512, 64, 16),
    Shape(16, 128, 32, 32),
    Shape(64, 512, 512, 4),
    Shape(64, 100, 1024, 4),
    Shape(16, 256, 128, 16, input_size=8),
)
QUICK_SHAPES = (Shape(4, 8, 8, 4), Shape(2, 8, 4, 8, input_size=4))


def interleaved_medians(callables: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each callable, timed round-robin so load changes hit all alike."""
    for fn in callables.values():
        for _ in range(warmup):
            fn()
    names = list(callables)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            callables[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_target(target: Target, shapes: tuple[Shape, ...], repeats: int, warmup: int) -> list[dict[str, Any]]:
    """Rows for one target in this process: one per (shape, mode), times of all three variants."""
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    rows = []
    for shape in shapes:
        spec = shape.spec
        variants = runner.bench_callables(spec, shape.batch, shape.input_size, **target.options)
        flops = spec.flops(shape.input_size) * shape.batch
        for index, mode in enumerate(MODES):
            seconds = interleaved_medians({v: variants[v][index] for v in VARIANTS}, repeats, warmup)
            work = flops * (3 if mode == "forward_backward" else 1)  # backward: input and weight gradients
            rows.append(
                {
                    "backend": target.label,
                    "shape": shape.label,
                    "mode": mode,
                    **{f"{v}_ms": seconds[v] * 1e3 for v in VARIANTS},
                    **{f"{v}_gflops": work / seconds[v] / 1e9 for v in VARIANTS},
                    "ours_over_native": seconds["ours"] / seconds["native"],
                    "ours_over_matmul": seconds["ours"] / seconds["matmul"],
                }
            )
    return rows


def run(
    targets: tuple[Target, ...], shapes: tuple[Shape, ...], repeats: int, warmup: int, progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Rows for every installed target; Keras targets each in a subprocess."""
    rows: list[dict[str, Any]] = []
    for target in targets:
        if not installed(target):
            progress(f"skipping {target.label}: not installed")
            continue
        progress(f"benchmarking {target.label}" + (" in a subprocess" if target.keras_backend else ""))
        if target.keras_backend is None:
            rows += bench_target(target, shapes, repeats, warmup)
            continue
        env = {**os.environ, "KERAS_BACKEND": target.keras_backend}
        arguments = json.dumps(
            {
                "label": target.label,
                "shapes": [dataclasses.asdict(s) for s in shapes],
                "repeats": repeats,
                "warmup": warmup,
            }
        )
        done = subprocess.run(
            [sys.executable, "-m", "upsample.bench", arguments], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            progress(f"{target.label} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
            continue
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Times in ms, GFLOP/s of ours, and the two ratios, one line per (backend, shape, mode)."""
    header = (
        "backend",
        "shape",
        "mode",
        "native ms",
        "ours ms",
        "matmul ms",
        "ours GF/s",
        "ours/native",
        "ours/matmul",
    )
    lines = [header] + [
        (
            r["backend"],
            r["shape"],
            "fwd" if r["mode"] == "forward" else "fwd+bwd",
            f"{r['native_ms']:.3f}",
            f"{r['ours_ms']:.3f}",
            f"{r['matmul_ms']:.3f}",
            f"{r['ours_gflops']:.1f}",
            f"{r['ours_over_native']:.2f}",
            f"{r['ours_over_matmul']:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            f"{c:>{w}}" if i > 2 else f"{c:<{w}}" for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Bar chart of ours/native and ours/matmul per backend and shape (forward and fwd+bwd panels)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('--plot needs matplotlib: pip install "upsample[plot]"') from None
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharey=True)
    for ax, mode in zip(axes, MODES, strict=True):
        selected = [r for r in rows if r["mode"] == mode]
        positions = range(len(selected))
        ax.bar([p - 0.2 for p in positions], [r["ours_over_native"] for r in selected], 0.4, label="ours / native")
        ax.bar([p + 0.2 for p in positions], [r["ours_over_matmul"] for r in selected], 0.4, label="ours / matmul")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(list(positions), [f"{r['backend']}\n{r['shape']}" for r in selected], rotation=90, fontsize=6)
        ax.set_ylabel("time ratio (lower is faster)")
        ax.set_yscale("log")
        ax.set_title("forward" if mode == "forward" else "forward + backward")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _worker(arguments: str) -> None:
    """Subprocess side for one Keras backend: prints its rows as one JSON line."""
    options = json.loads(arguments)
    target = next(t for t in TARGETS if t.label == options["label"])
    shapes = tuple(Shape(**s) for s in options["shapes"])
    print(json.dumps(bench_target(target, shapes, options["repeats"], options["warmup"])))


if __name__ == "__main__":
    _worker(sys.argv[1])
