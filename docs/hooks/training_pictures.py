"""Draw each upsampler kind after a few training steps on a smooth target (docs/choosing-an-upsampler.md).

Pure NumPy: every layer runs as ``upsample.reference.forward`` and learns through ``upsample.reference.vjp``
with a hand-written Adam, seeded, so the picture is the same on every build. The task is smooth on
purpose: the input is 4 smooth fields at 16x16, the target one fixed mix of the same fields at 32x32,
so a period-2 pattern in the output comes from the layer (Odena et al. 2016, "Deconvolution and
Checkerboard Artifacts"); the least-squares fit says how much of it the layer's geometry forces.
Run by ``coverage_pictures.on_pre_build``: ``python training_pictures.py OUT.png``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

import upsample
from upsample.weights import Weights

IN_CHANNELS, SIZE, SCALE = 4, 16, 2
BATCH, STEPS, LEARNING_RATE = 8, 40, 0.02
SEED = 0
SHOWN = 0  # which sample of the batch the picture shows

# (column title, spec, init scheme): factor-2 stages as in the coverage pictures, 4 -> 1 channels.
CASES: list[tuple[str, Any, str]] = [
    (
        "transposed k3 s2\n(checkerboard coverage)",
        upsample.UpsampleSpec(IN_CHANNELS, 1, kernel_size=3, stride=2, padding=1, output_padding=1),
        "he_uniform",
    ),
    (
        "transposed k4 s2\n(even coverage)",
        upsample.UpsampleSpec(IN_CHANNELS, 1, kernel_size=4, stride=2, padding=1),
        "he_uniform",
    ),
    ("sub-pixel k3 r2\n(he_uniform init)", upsample.SubpixelSpec(IN_CHANNELS, 1, scale=SCALE), "he_uniform"),
    ("sub-pixel k3 r2\n(ICNR init)", upsample.SubpixelSpec(IN_CHANNELS, 1, scale=SCALE), "icnr"),
    ("resize k3 r2\n(nearest)", upsample.ResizeSpec(IN_CHANNELS, 1, scale=SCALE, method="nearest"), "he_uniform"),
    ("resize k3 r2\n(bilinear)", upsample.ResizeSpec(IN_CHANNELS, 1, scale=SCALE, method="bilinear"), "he_uniform"),
]


def smooth_task(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: ``x`` is ``BATCH`` samples of ``IN_CHANNELS`` random sums of three sinusoids (below 1.5
    cycles per image) at the pixel centres of a ``SIZE`` grid on the unit square; ``y`` is a fixed random
    mix of the same functions at the pixel centres of the ``SIZE * SCALE`` grid."""
    rng = np.random.default_rng(seed)
    shape = (BATCH, 1, 1, IN_CHANNELS, 3)
    freq_u, freq_v = rng.uniform(-1.5, 1.5, size=(2, *shape))
    phase, amplitude = rng.uniform(0, 2 * np.pi, size=shape), rng.uniform(0.3, 1.0, size=shape)
    mix = rng.normal(size=(IN_CHANNELS, 1))

    def sample(size: int) -> np.ndarray:
        centres = (np.arange(size) + 0.5) / size
        v, u = (grid[None, :, :, None, None] for grid in np.meshgrid(centres, centres, indexing="ij"))
        return (amplitude * np.cos(2 * np.pi * (freq_u * u + freq_v * v) + phase)).sum(axis=-1)

    return sample(SIZE), sample(SIZE * SCALE) @ mix


def train(spec: Any, weights: Weights, x: np.ndarray, y: np.ndarray) -> Weights:
    """``STEPS`` steps of full-batch Adam (Kingma and Ba 2015, default betas) on the mean squared error."""
    params = [np.asarray(weights.kernel, dtype=np.float64), np.asarray(weights.bias, dtype=np.float64)]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for step in range(1, STEPS + 1):
        current = Weights(*params)
        grad_y = 2 * (upsample.reference.forward(spec, current, x) - y) / y.size
        _, grads = upsample.reference.vjp(spec, current, x, grad_y)
        for p, m, s, g in zip(params, first, second, (grads.kernel, grads.bias), strict=True):
            m[...] = 0.9 * m + 0.1 * g
            s[...] = 0.999 * s + 0.001 * g * g
            p -= LEARNING_RATE * (m / (1 - 0.9**step)) / (np.sqrt(s / (1 - 0.999**step)) + 1e-8)
    return Weights(*params)


def best_fit(spec: Any, x: np.ndarray, y: np.ndarray) -> Weights:
    """The least-squares weights, what training would reach at the end: each layer is linear in its
    weights, so the design matrix's columns are the outputs of one-hot weights."""
    shapes = spec.weight_shapes()
    kernel_size = int(np.prod(shapes["kernel"]))

    def unpack(vector: np.ndarray) -> Weights:
        return Weights(vector[:kernel_size].reshape(shapes["kernel"]), vector[kernel_size:])

    basis = np.eye(kernel_size + int(np.prod(shapes["bias"])))
    design = np.stack([upsample.reference.forward(spec, unpack(v), x).ravel() for v in basis], axis=1)
    return unpack(np.linalg.lstsq(design, y.ravel(), rcond=None)[0])


def high_pass(image: np.ndarray) -> np.ndarray:
    """``image`` minus its [1, 2, 1] / 4 blur along both axes (edges repeated): removes the smooth part
    and keeps the whole period-2 (checkerboard) part, which the blur zeroes."""
    padded = np.pad(image, 1, mode="edge")
    rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    blurred = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    return image - blurred


def interior_rms(image: np.ndarray) -> float:
    """RMS of ``high_pass(image)`` two pixels away from the borders (where zero padding adds its own edges)."""
    return float(np.sqrt(np.mean(high_pass(image)[2:-2, 2:-2] ** 2)))


def draw(path: str) -> None:
    """Train every case from the same data and seed, and save the grid: target, then one column per case."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    x, y = smooth_task(SEED)
    sample = x[SHOWN : SHOWN + 1]
    target = y[SHOWN, :, :, 0]
    columns = [("target", target, "", f"RMS {interior_rms(target):.3f}")]
    best: dict[Any, float] = {}  # RMS at the least-squares fit, per spec (both sub-pixel columns share one)
    for title, spec, scheme in CASES:
        initial = upsample.init_weights(spec, seed=SEED, scheme=scheme)
        trained = train(spec, initial, x, y)
        image = upsample.reference.forward(spec, trained, sample)[0, :, :, 0]
        mse = np.mean((upsample.reference.forward(spec, trained, x) - y) ** 2)
        at_init = interior_rms(upsample.reference.forward(spec, initial, sample)[0, :, :, 0])
        if spec not in best:
            best[spec] = interior_rms(upsample.reference.forward(spec, best_fit(spec, x, y), sample)[0, :, :, 0])
        rms_label = f"RMS {interior_rms(image):.3f}\n(init {at_init:.2f}, best fit {best[spec]:.2f})"
        columns.append((title, image, f"MSE {mse:.3f}", rms_label))
    value_range = np.abs(target).max()
    residual_range = max(np.abs(high_pass(image)[2:-2, 2:-2]).max() for _, image, _, _ in columns)

    fig = Figure(figsize=(2.0 * len(columns) + 0.3, 5.2), layout="constrained")
    axes = fig.subplots(2, len(columns))
    for column, (title, image, mse_label, rms_label) in enumerate(columns):
        top, bottom = axes[0, column], axes[1, column]
        shown = top.imshow(image, cmap="viridis", vmin=-value_range, vmax=value_range, interpolation="nearest")
        top.set_title(title, fontsize=9)
        top.set_xlabel(mse_label, fontsize=8)
        detail = bottom.imshow(
            high_pass(image), cmap="RdBu_r", vmin=-residual_range, vmax=residual_range, interpolation="nearest"
        )
        bottom.set_xlabel(rms_label, fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel(f"output after {STEPS} Adam steps", fontsize=9)
    axes[1, 0].set_ylabel("output minus its blur", fontsize=9)
    fig.colorbar(shown, ax=axes[0, :], shrink=0.8)
    fig.colorbar(detail, ax=axes[1, :], shrink=0.8)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    started = time.perf_counter()
    draw(sys.argv[1])
    print(f"saved {sys.argv[1]} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
