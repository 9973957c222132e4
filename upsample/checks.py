"""Checks every backend runs on a layer's input before its framework sees it, and the warning
for outputs with dead pixels. Errors name the argument, the value received and what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from upsample.spec import UpsampleSpec

LAYOUTS = ("NHWC", "NCHW")


class UpsampleWarning(UserWarning):
    """A layer will compute something the user probably did not mean (e.g. dead output pixels)."""


def check_input(
    spec: UpsampleSpec, shape: Sequence[int | None], layout: str, floating: bool, dtype: str
) -> tuple[int, int]:
    """Check an input's shape and dtype against ``spec``; return its ``(H, W)``.

    ``layout`` is ``"NHWC"`` or ``"NCHW"``; ``floating`` says whether the dtype is a floating type
    and ``dtype`` names it for the message. Unknown (``None``) batch sizes are allowed.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"x must be a rank-4 {layout} tensor, got shape {shape} (rank {len(shape)}); "
            f"a pooled vector (B, C) needs reshaping to {_example(spec, layout)}"
        )
    channel_axis, other_axis = (3, 1) if layout == "NHWC" else (1, 3)
    channels = shape[channel_axis]
    if channels != spec.in_channels:
        hint = ""
        if shape[other_axis] == spec.in_channels:
            other = "NCHW" if layout == "NHWC" else "NHWC"
            hint = f": is this {other}?"
        raise ValueError(f"expected {layout} with C={spec.in_channels}, got shape {shape}{hint}")
    if not floating:
        raise TypeError(f"x must have a floating dtype, got {dtype}")
    height, width = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    if height is None or width is None:
        raise ValueError(f"x must have static spatial dimensions, got shape {shape}")
    spec.output_size((height, width))
    return height, width


def _example(spec: UpsampleSpec, layout: str) -> str:
    return f"(B, 1, 1, {spec.in_channels})" if layout == "NHWC" else f"(B, {spec.in_channels}, 1, 1)"


class DeadPixelGuard:
    """Warns (once per input size, per layer) when an output would have pixels the input never reaches."""

    def __init__(self, spec: UpsampleSpec) -> None:
        self._spec = spec
        self._seen: set[tuple[int, int]] = set()

    def __call__(self, input_size: tuple[int, int], stacklevel: int = 3) -> None:
        if input_size in self._seen:
            return
        self._seen.add(input_size)
        report = self._spec.diagnose(input_size)
        if report.dead:
            warnings.warn(
                f"UpsampleSpec(kernel_size={self._spec.kernel_size}, stride={self._spec.stride}, "
                f"crops={self._spec.crops}) on a {input_size[0]}x{input_size[1]} input: {report.verdict}. "
                f"UpsampleSpec.for_size() picks parameters with every pixel live.",
                UpsampleWarning,
                stacklevel=stacklevel,
            )
