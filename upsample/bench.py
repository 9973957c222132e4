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
from typing import TYPE_CHECKING, Any

from upsample import plans
from upsample.arguments import size_text
from upsample.conv_specs import ResizeSpec
from upsample.crosscheck import TARGETS, Target, installed, select
from upsample.spec import UpsampleSpec, load_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VARIANTS = ("native", "ours", "matmul")
MODES = ("forward", "forward_backward")
# Ratio axis ticks of the plot, written as plain numbers.
PLOT_TICKS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100)


@dataclasses.dataclass(frozen=True)
class Shape:
    """A benchmark case: batch, channels, input size, output size and spec kind (spec chosen by ``for_size``)."""

    batch: int
    in_channels: int
    out_channels: int
    size: int
    input_size: int = 1
    kind: str = "transposed"
    """The spec kind (``bench --mode``): see :func:`upsample.plans.for_size`."""
    spec_json: str | None = None
    """A spec of its own instead of the ``for_size`` one (its kernel and stride join the label)."""
    spatial_dims: int = 2
    """Spatial axes: sizes are ``size`` on each (1-D: a length; 3-D: a cube)."""

    @property
    def spec(self) -> Any:
        if self.spec_json is not None:
            return load_spec(self.spec_json)
        return plans.for_size(
            self.kind,
            self.in_channels,
            self.size,
            out_channels=self.out_channels,
            input_size=self.input_size,
            spatial_dims=self.spatial_dims,
        )

    @property
    def label(self) -> str:
        own = ""
        if self.spec_json is not None and isinstance(self.spec, ResizeSpec):
            spec = self.spec
            cubic = f" a{spec.cubic_a:g}" + (" excl" if spec.exclude_outside else "") if spec.method == "cubic" else ""
            factor = f" x{spec.scale[0]:g}" if spec.integer_scale is None and spec.scale else ""
            own = f" resize{factor} {spec.method} {spec.coordinates}{cubic} k{spec.kernel_size[0]}"
        elif self.spec_json is not None:
            spec = self.spec
            padding = f" p{spec.crops[0][0]}" if spec.crops[0][0] else ""
            grouping = (f" g{spec.groups}" if spec.groups > 1 else "") + (
                f" d{spec.dilation[0]}" if spec.dilation[0] > 1 else ""
            )
            own = f" k{spec.kernel_size[0]} s{spec.stride[0]}{padding}{grouping}"
        source, target = ((n,) * self.spatial_dims for n in (self.input_size, self.size))
        return (
            "" if self.kind == "transposed" else f"{self.kind} "
        ) + f"B{self.batch} {self.in_channels}->{self.out_channels} {size_text(source)}->{size_text(target)}{own}"


# Dense projections from 1x1 (kernel N, stride 1; DCGAN's z=100 -> 4x4x1024 among them); the stages of
# the PyTorch DCGAN generator (k4 s2 p1) and a k3 s2 "same" stage, where most of a head's FLOPs are.
SHAPES = (
    Shape(64, 100, 512, 4),
    Shape(64, 256, 256, 8),
    Shape(32, 512, 64, 16),
    Shape(16, 128, 32, 32),
    Shape(64, 512, 512, 4),
    Shape(64, 100, 1024, 4),
    Shape(16, 256, 128, 16, input_size=8),
    Shape(64, 512, 256, 8, input_size=4),
    Shape(64, 256, 128, 16, input_size=8),
    Shape(64, 128, 64, 32, input_size=16),
    Shape(64, 64, 3, 64, input_size=32),
    Shape(16, 256, 128, 16, input_size=8, spec_json=UpsampleSpec(256, 128, 3, 2, "same").to_json()),
    # A vocoder stage (HiFi-GAN's first: k16 s8 p4, length 32 -> 256) and MONAI-style volumetric stages
    # (16^3 -> 32^3: deconv k2 s2, and k4 s2 p1).
    Shape(16, 512, 256, 256, input_size=32, spatial_dims=1, spec_json=UpsampleSpec(512, 256, (16,), 8, 4).to_json()),
    Shape(2, 64, 32, 32, input_size=16, spatial_dims=3, spec_json=UpsampleSpec(64, 32, (2, 2, 2), 2).to_json()),
    Shape(2, 64, 32, 32, input_size=16, spatial_dims=3, spec_json=UpsampleSpec(64, 32, (4, 4, 4), 2, 1).to_json()),
    # FCN's depthwise bilinear stage (groups = channels, k4 s2 p1) and a dilated k3 s2 stage (d3: extent 7), 16 -> 32
    Shape(8, 64, 64, 32, input_size=16, spec_json=UpsampleSpec(64, 64, 4, 2, 1, groups=64).to_json()),
    Shape(8, 64, 64, 32, input_size=16, spec_json=UpsampleSpec(64, 64, 3, 2, 3, 1, dilation=3).to_json()),
    # resizes no framework computes natively run as gathers (timed against the framework's own resize of the same
    # method and output size): JAX's cubic in 2-D (native in JAX, gathers in torch), asymmetric trilinear (gathers)
    Shape(
        8,
        32,
        32,
        64,
        input_size=32,
        spec_json=ResizeSpec(32, 32, 2, "cubic", 3, cubic_a=-0.5, exclude_outside=True).to_json(),
    ),
    Shape(
        2,
        16,
        16,
        32,
        input_size=16,
        spatial_dims=3,
        spec_json=ResizeSpec(16, 16, 2, "linear", 3, spatial_dims=3, coordinates="asymmetric").to_json(),
    ),
    # a segmentation decoder's resize by 1.5 (32 -> 48, gathers everywhere; timed against the framework's own
    # resize to the same size)
    Shape(8, 32, 32, 48, input_size=32, spec_json=ResizeSpec(32, 32, 1.5, "linear", 3).to_json()),
)
GENERATOR_CHANNELS = (100, 512, 256, 128, 64, 3)
"""The PyTorch DCGAN generator (nz=100, ngf=64, nc=3), 1x1 -> 64x64, without its normalisation."""
GENERATOR_BATCH = 64


def generator_specs() -> list[UpsampleSpec]:
    """The DCGAN generator's stages: 1 -> 4 (k4 s1 p0), then k4 s2 p1 doublings to 64x64."""
    specs, size = [UpsampleSpec.for_size(GENERATOR_CHANNELS[0], 4, out_channels=GENERATOR_CHANNELS[1])], 4
    for c_in, c_out in zip(GENERATOR_CHANNELS[1:-1], GENERATOR_CHANNELS[2:], strict=True):
        specs.append(UpsampleSpec.for_size(c_in, 2 * size, out_channels=c_out, input_size=size))
        size *= 2
    return specs


QUICK_SHAPES = (Shape(2, 8, 8, 4),)
"""``bench --quick``: a smoke test of every code path in seconds, not a measurement."""
REPEATS, WARMUP, QUICK_REPEATS, QUICK_WARMUP = 30, 5, 3, 1


def chosen_targets(names: str | None, quick: bool) -> tuple[Target, ...]:
    """The targets ``--backends`` names; by default all, but for ``--quick`` Keras only on ``$KERAS_BACKEND``
    (Keras's default, tensorflow, when unset): each Keras backend costs a new process and its imports."""
    if names is not None or not quick:
        return select(names)
    keras_now = os.environ.get("KERAS_BACKEND") or "tensorflow"
    return tuple(t for t in TARGETS if t.keras_backend in (None, keras_now))


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


def bench_generator(target: Target, repeats: int, warmup: int) -> dict[str, Any]:
    """The end-to-end row: one SGD step of the DCGAN generator head built from the framework's own layers
    vs from specs, interleaved (no matmul variant: the step is many products)."""
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    steps = runner.generator_step_callables(generator_specs(), GENERATOR_BATCH, **target.options)
    seconds = interleaved_medians(steps, repeats, warmup)
    return {
        "backend": target.label,
        "shape": f"DCGAN generator B{GENERATOR_BATCH} 1x1->64x64",
        "mode": "train_step",
        **{f"{v}_ms": seconds[v] * 1e3 for v in ("native", "ours")},
        "ours_over_native": seconds["ours"] / seconds["native"],
    }


def bench_target(
    target: Target, shapes: tuple[Shape, ...], repeats: int, warmup: int, generator: bool = False
) -> list[dict[str, Any]]:
    """Rows for one target in this process: one per (shape, mode), times of all three variants, and the
    generator step when asked."""
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    rows = [bench_generator(target, repeats, warmup)] if generator else []
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
    targets: tuple[Target, ...],
    shapes: tuple[Shape, ...],
    repeats: int,
    warmup: int,
    progress: Callable[[str], None],
    generator: bool = False,
) -> list[dict[str, Any]]:
    """Rows for every installed target; Keras targets each in a subprocess."""
    rows: list[dict[str, Any]] = []
    for target in targets:
        if not installed(target):
            progress(f"skipping {target.label}: not installed")
            continue
        progress(f"benchmarking {target.label}" + (" in a subprocess" if target.keras_backend else ""))
        if target.keras_backend is None:
            rows += bench_target(target, shapes, repeats, warmup, generator)
            continue
        env = {**os.environ, "KERAS_BACKEND": target.keras_backend}
        arguments = json.dumps(
            {
                "label": target.label,
                "shapes": [dataclasses.asdict(s) for s in shapes],
                "repeats": repeats,
                "warmup": warmup,
                "generator": generator,
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
            {"forward": "fwd", "forward_backward": "fwd+bwd"}.get(r["mode"], "step"),
            f"{r['native_ms']:.3f}",
            f"{r['ours_ms']:.3f}",
            f"{r['matmul_ms']:.3f}" if "matmul_ms" in r else "-",
            f"{r['ours_gflops']:.1f}" if "ours_gflops" in r else "-",
            f"{r['ours_over_native']:.2f}",
            f"{r['ours_over_matmul']:.2f}" if "ours_over_matmul" in r else "-",
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


def figure(rows: list[dict[str, Any]]) -> Figure:
    """Horizontal bars of ours/native and ours/matmul, one row per backend and shape, one panel per mode.

    ``rows`` are those of ``run`` (or ``bench --json``'s output read back), so a saved run can be
    re-drawn without timing it again.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    except ImportError:
        raise ImportError('--plot needs matplotlib: pip install "upsample[plot]"') from None
    rows = [r for r in rows if r["mode"] in MODES]  # the generator step has no matmul to compare with
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    # One heading row per backend (bold), then its shapes, top to bottom.
    labels: list[str] = []
    position: dict[tuple[str, str], int] = {}
    for backend in backends:
        labels.append(backend)
        for shape in shapes:
            position[backend, shape] = len(labels)
            labels.append(shape)
    ratios = [r[key] for r in rows for key in ("ours_over_native", "ours_over_matmul")]
    ticks = [t for t in PLOT_TICKS if min(ratios) / 3 <= t <= max(ratios) * 3]
    fig = Figure(figsize=(10, 0.24 * len(labels) + 1.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, mode in zip(axes, MODES, strict=True):
        selected = [r for r in rows if r["mode"] == mode]
        where = [position[r["backend"], r["shape"]] for r in selected]
        # Bars start at 1 (equal time): to the left where ours is faster, to the right where slower.
        for offset, key, label in (
            (-0.2, "ours_over_native", "ours / native"),
            (0.2, "ours_over_matmul", "ours / matmul"),
        ):
            ratio = [r[key] for r in selected]
            ax.barh([y + offset for y in where], [v - 1 for v in ratio], 0.4, left=1, label=label)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(axis="x", color="0.85", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_xlabel("time ratio (log scale; below 1 is faster)")
        ax.set_title("forward" if mode == "forward" else "forward + backward")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=9)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=9)
    for label in axes[0].get_yticklabels():
        if label.get_text() in backends:
            label.set_fontweight("bold")
    axes[0].tick_params(axis="y", length=0)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)
    return fig


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Save ``figure(rows)`` as a PNG (``bench --plot``)."""
    figure(rows).savefig(path, dpi=100)


def _worker(arguments: str) -> None:
    """Subprocess side for one Keras backend: prints its rows as one JSON line."""
    options = json.loads(arguments)
    target = next(t for t in TARGETS if t.label == options["label"])
    shapes = tuple(Shape(**s) for s in options["shapes"])
    print(json.dumps(bench_target(target, shapes, options["repeats"], options["warmup"], options["generator"])))


if __name__ == "__main__":
    _worker(sys.argv[1])
