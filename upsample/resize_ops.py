"""A resize as gathers and weighted sums, one axis after the other, over any framework's ops.

Every build runs its framework's native resize where that computes the spec's definition (ONNX ``Resize``,
:mod:`upsample.interpolation`; :func:`upsample.resize_table.native_for`) and :func:`resize` where it does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from upsample.interpolation import Interpolation

Gather = tuple[np.ndarray, np.ndarray]
"""One tap slot along an axis: the source pixel of every output pixel (int32) and its weight (float64). An output
pixel that reads fewer pixels than there are slots fills the rest with its first pixel at weight 0, so a NaN or
an infinity reaches only the outputs that read it."""


@functools.lru_cache(maxsize=256)
def axis_gathers(interpolation: Interpolation, length: int, out_length: int, scale: float | None) -> tuple[Gather, ...]:
    """The tap slots of a resize along one axis of ``length`` pixels to ``out_length`` with coordinates at
    ``scale`` (``None``: ``out_length / length``): as many slots as the output pixel with the most taps reads."""
    return slots(interpolation.axis_taps(length, out_length, scale))


def slots(pixels: Sequence[tuple[Sequence[int], Sequence[float]]]) -> tuple[Gather, ...]:
    """Each output pixel's ``(sources, weights)`` laid out in tap slots (:data:`Gather`), as many as the pixel with
    the most taps reads; a pixel with fewer repeats its last source at weight 0."""
    count = max(len(sources) for sources, _ in pixels)
    return tuple(
        (
            np.array([sources[min(t, len(sources) - 1)] for sources, _ in pixels], dtype=np.int32),
            np.array([weights[t] if t < len(weights) else 0.0 for _, weights in pixels]),
        )
        for t in range(count)
    )


def resize_as(
    spec: Any,
    x: Any,
    axes: Sequence[int],
    size: Sequence[int],
    take: Callable[[Any, np.ndarray, int], Any],
    weights: Callable[[np.ndarray, Any], Any],
) -> Any:
    """``x`` resized as a :class:`~upsample.ResizeSpec` says, along ``axes`` of static lengths ``size``: :func:`resize`
    to the spec's output size with its per-axis factors (what every build's gathers run)."""
    return resize(x, spec.interpolation, axes, size, spec.output_size(tuple(size)), spec.axis_scales, take, weights)


def resize(
    x: Any,
    interpolation: Interpolation,
    axes: Sequence[int],
    size: Sequence[int],
    out_size: Sequence[int],
    scales: Sequence[float | None],
    take: Callable[[Any, np.ndarray, int], Any],
    weights: Callable[[np.ndarray, Any], Any],
) -> Any:
    """``x`` resized along its ``axes`` from the static lengths ``size`` to ``out_size``, the coordinates mapping
    with ``scales`` (``None``: ``out / in``): per axis, the sum over tap slots of ``weight * take(x, sources,
    axis)``. ``take(x, indices, axis)`` gathers along an axis, ``weights(array, x)`` makes a constant of ``x``'s
    dtype and device; both are the framework's."""
    for axis, length, out_length, scale in zip(axes, size, out_size, scales, strict=True):
        if out_length == length and scale in (None, 1):  # the identity
            continue
        gathers = axis_gathers(interpolation, length, out_length, scale)
        if len(gathers) == 1 and np.all(gathers[0][1] == 1.0):
            x = take(x, gathers[0][0], axis)
            continue
        shape = [1] * len(x.shape)
        shape[axis] = out_length
        total = None
        for sources, weight in gathers:
            term = weights(weight.reshape(shape), x) * take(x, sources, axis)
            total = term if total is None else total + term
        x = total
    return x
