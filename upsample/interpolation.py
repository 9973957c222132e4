"""Resizing along one axis as ONNX ``Resize`` (opset >= 13) defines it: which input pixels each output pixel
reads, and with which weights. Pure Python, exact arithmetic; every backend and the reference read it.

ONNX names every choice the frameworks make differently (pytorch#10604, jax#11206, flax#2210):

- ``coordinates`` (ONNX ``coordinate_transformation_mode``) maps output pixel ``o`` to a source coordinate
  ``x``: ``half_pixel`` ``(o + 1/2) / s - 1/2``; ``pytorch_half_pixel`` the same, but ``0`` for a 1-pixel
  output; ``align_corners`` ``o * (n_in - 1) / (n_out - 1)`` (``0`` for a 1-pixel output); ``asymmetric``
  ``o / s``. ``s`` is the scale given, or ``n_out / n_in`` when a size is given.
- ``nearest`` reads one pixel: ``x`` rounded by ``nearest_mode`` (``round_prefer_floor``,
  ``round_prefer_ceil``, ``floor``, ``ceil``), clamped to the input.
- ``linear`` reads ``floor(x)`` and ``floor(x) + 1`` with weights ``1 - t`` and ``t`` (``t = x - floor(x)``),
  ``cubic`` the four pixels around ``x`` with Keys' weights for ``cubic_a`` (Keys 1981; ``-0.75`` as ONNX and
  torch, ``-0.5`` as TensorFlow and JAX). A pixel outside the input reads the nearest edge pixel, or with
  ``exclude_outside`` gets weight 0 and the rest are scaled to sum to 1.

Coordinates are exact fractions (a float scale is taken at its exact binary value), so a tie in ``nearest``
is a tie and every backend gathers the same pixels.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from upsample.messages import shown

METHODS = ("nearest", "linear", "cubic")
METHOD_NAMES = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}
"""Other names users write for the methods (torch's and TensorFlow's), read as the method they name."""
COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_ceil", "round_prefer_floor", "floor", "ceil")

AxisTaps = tuple[tuple[int, ...], tuple[float, ...]]
"""The pixels one output pixel reads along an axis and their weights (weights of 0 left out)."""


@dataclasses.dataclass(frozen=True)
class Interpolation:
    """One ONNX ``Resize`` setting (its attributes ``mode``, ``coordinate_transformation_mode``,
    ``nearest_mode``, ``cubic_coeff_a``, ``exclude_outside``); the defaults are half-pixel centres with ties
    rounded up, which is torch's ``nearest-exact``, ``tf.image.resize`` and ``jax.image.resize``."""

    method: str = "nearest"
    coordinates: str = "half_pixel"
    nearest_mode: str = "round_prefer_ceil"
    cubic_a: float = -0.75
    exclude_outside: bool = False

    def __post_init__(self) -> None:
        set_field = object.__setattr__.__get__(self)
        set_field("method", method_name(self.method))
        for name, allowed in (("coordinates", COORDINATES), ("nearest_mode", NEAREST_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {shown(getattr(self, name))}")
        if isinstance(self.cubic_a, bool) or not isinstance(self.cubic_a, (int, float)):
            raise TypeError(f"cubic_a must be a float, got {shown(self.cubic_a)}")
        if not -1 <= self.cubic_a <= 0:  # where Keys' weights of the two nearest pixels are positive (NaN fails too)
            raise ValueError(
                f"cubic_a must be in [-1, 0] (-0.75: ONNX, torch; -0.5: TensorFlow, JAX), got {shown(self.cubic_a)}"
            )
        set_field("cubic_a", float(self.cubic_a))
        if not isinstance(self.exclude_outside, bool):
            raise TypeError(f"exclude_outside must be a bool, got {shown(self.exclude_outside)}")

    def simplest(self) -> Interpolation:
        """The same resize with the settings its method does not read at their defaults (``nearest_mode`` outside
        ``nearest``; ``cubic_a`` and ``exclude_outside`` outside ``cubic``)."""
        if self.method == "nearest":
            return Interpolation("nearest", self.coordinates, self.nearest_mode)
        if self.method == "linear":
            return Interpolation("linear", self.coordinates)
        return Interpolation("cubic", self.coordinates, cubic_a=self.cubic_a, exclude_outside=self.exclude_outside)

    def for_integer_scale(self) -> Interpolation:
        """The one setting of those that resize alike by every integer factor (tests/test_interpolation.py checks
        it pixel by pixel): the settings a method does not read at their defaults, ``pytorch_half_pixel`` as
        ``half_pixel`` (they differ only for a 1-pixel output, which an integer factor gives from 1 pixel by 1,
        no resize), and every nearest setting that repeats pixels (half-pixel centres rounded either way: no
        ties; ``asymmetric`` with ``floor``) as :data:`REPEAT`."""
        coordinates = "half_pixel" if self.coordinates == "pytorch_half_pixel" else self.coordinates
        simplest = dataclasses.replace(self.simplest(), coordinates=coordinates)
        repeat = self.method == "nearest" and (
            (coordinates == "half_pixel" and self.nearest_mode.startswith("round"))
            or (coordinates == "asymmetric" and self.nearest_mode == "floor")
        )
        return REPEAT if repeat else simplest

    def repeats(self) -> bool:
        """Whether an integer factor repeats every pixel that many times (what the nearest fast paths compute)."""
        return self.for_integer_scale() == REPEAT

    def axis_taps(self, input_length: int, output_length: int, scale: float | None = None) -> tuple[AxisTaps, ...]:
        """For each of the ``output_length`` pixels, the input pixels it reads and their weights.

        ``scale`` is the factor the coordinates use (ONNX's ``scales``); ``None`` means ``output_length /
        input_length`` (ONNX's ``sizes``).
        """
        ratio = Fraction(output_length, input_length) if scale is None else Fraction(scale)
        return tuple(
            self._taps(self.source(o, input_length, output_length, ratio), input_length) for o in range(output_length)
        )

    def source(self, position: int, input_length: int, output_length: int, scale: Fraction) -> Fraction:
        """The source coordinate of output pixel ``position`` (``coordinate_transformation_mode``)."""
        if self.coordinates == "asymmetric":
            return position / scale
        if self.coordinates == "align_corners":
            return Fraction(position * (input_length - 1), output_length - 1) if output_length > 1 else Fraction(0)
        if self.coordinates == "pytorch_half_pixel" and output_length == 1:
            return Fraction(0)
        return (position + Fraction(1, 2)) / scale - Fraction(1, 2)

    def _taps(self, x: Fraction, length: int) -> AxisTaps:
        if self.method == "nearest":
            return (min(max(_round(x, self.nearest_mode), 0), length - 1),), (1.0,)
        low = math.floor(x)
        t = x - low
        if t == 0:  # on a pixel: that pixel alone (ONNX takes t = 1 from the pixel before, the same weights)
            return (min(max(low, 0), length - 1),), (1.0,)
        if self.method == "linear":
            pixels, weights = [low, low + 1], [1 - t, t]
        else:
            pixels, weights = [low - 1, low, low + 1, low + 2], _keys(t, Fraction(self.cubic_a))
        if self.exclude_outside:
            inside = [(p, w) for p, w in zip(pixels, weights, strict=True) if 0 <= p < length]
            total = sum(w for _, w in inside)
            pixels, weights = [p for p, _ in inside], [w / total for _, w in inside]
        merged: dict[int, Fraction] = {}
        for pixel, weight in zip(pixels, weights, strict=True):
            clamped = min(max(pixel, 0), length - 1)
            merged[clamped] = merged.get(clamped, Fraction(0)) + weight
        kept = sorted(p for p, w in merged.items() if w != 0)
        return tuple(kept), tuple(float(merged[p]) for p in kept)


def method_name(method: object) -> str:
    """``method`` as one of :data:`METHODS` (``"bilinear"``, ``"trilinear"``, ``"bicubic"`` read as theirs)."""
    name = METHOD_NAMES.get(method, method) if isinstance(method, str) else method
    if name not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (or {tuple(METHOD_NAMES)}), got {shown(method)}")
    return str(name)


def output_length(input_length: int, scale: float) -> int:
    """ONNX's output length for a scale: ``floor(input_length * scale)`` with the product in float64, as ONNX's
    reference implementation (``onnx.reference`` ``Resize``) and torch's ``F.interpolate`` compute it: ``10 * 2.3``
    is 23 pixels, though the float nearest 2.3 is a hair below it (onnxruntime multiplies in float32, which can
    round up where float64 does not: docs/resize.md)."""
    return math.floor(float(input_length) * float(scale))


def _round(x: Fraction, mode: str) -> int:
    if mode == "floor":
        return math.floor(x)
    if mode == "ceil":
        return math.ceil(x)
    if x - math.floor(x) == Fraction(1, 2):
        return math.ceil(x) if mode == "round_prefer_ceil" else math.floor(x)
    return math.floor(x + Fraction(1, 2))


def _keys(t: Fraction, a: Fraction) -> list[Fraction]:
    """Keys' cubic convolution weights of the pixels at distances ``1 + t, t, 1 - t, 2 - t`` from ``x``."""

    def near(d: Fraction) -> Fraction:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: Fraction) -> Fraction:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(1 + t), near(t), near(1 - t), far(2 - t)]


REPEAT = Interpolation("nearest", "half_pixel", "round_prefer_ceil")
"""A nearest resize that, by an integer factor ``r``, repeats every pixel ``r`` times (``floor((o + 1/2) / r)``)."""
