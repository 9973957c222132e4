"""Checks every backend runs on a layer's input before its framework sees it, and the warning
for outputs with dead pixels or no upsampling. Errors name the argument, the value received and
what was expected.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from upsample import limits
from upsample.arguments import size_text

LAYOUTS = ("NHWC", "NCHW")


class UpsampleWarning(UserWarning):
    """A layer will compute something the user probably did not mean (e.g. dead output pixels)."""


def check_input(
    spec: Any,
    shape: Sequence[int | None],
    layout: str,
    floating: bool,
    dtype: str,
    *,
    unbatched: bool = False,
    dynamic: bool = False,
) -> tuple[int | None, ...]:
    """Check an input's shape and dtype against ``spec``; return its spatial size (``(H, W)`` in 2-D).

    ``layout`` is ``"NHWC"`` (channels last: ``(N, *spatial, C)`` for any number of spatial axes) or ``"NCHW"``
    (channels first); ``floating`` says whether the dtype is a floating type and ``dtype`` names it for the
    message. Unknown (``None``) batch sizes are allowed; unknown spatial sizes only with ``dynamic`` (then
    returned as ``None``), and an input without the batch axis only with ``unbatched``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    rank = getattr(spec, "spatial_dims", 2)
    batched = layout_name(layout, rank)
    given = shape = tuple(shape)  # messages show ``given``, the shape the user passed
    named = batched
    if unbatched and len(shape) == rank + 1:
        shape, named = (1, *shape), batched[1:]
    elif len(shape) != rank + 2:
        ranks = f"rank-{rank + 2} {batched}" + (f" (or rank-{rank + 1} {batched[1:]}, unbatched)" if unbatched else "")
        raise ValueError(
            f"x must be a {ranks} tensor, got shape {_shape(given)} (rank {len(given)}); "
            f"a pooled vector (B, C) needs reshaping to {_example(spec, layout, rank)}"
        )
    channel_axis, other_axis = (-1, 1) if layout == "NHWC" else (1, -1)
    channels = shape[channel_axis]
    if channels != spec.in_channels:
        hint = ""
        if shape[other_axis] == spec.in_channels:
            other = layout_name("NCHW" if layout == "NHWC" else "NHWC", rank)
            hint = f": is this {other if named == batched else other[1:]}?"
        raise ValueError(f"x: expected {named} with C={spec.in_channels}, got shape {_shape(given)}{hint}")
    if not floating:
        raise TypeError(f"x must have a floating dtype, got {dtype}")
    size = shape[1:-1] if layout == "NHWC" else shape[2:]
    if None in size:
        if not dynamic:
            raise ValueError(f"x must have static spatial dimensions, got shape {_shape(given)}")
        return size
    limits.check_output(spec, size, f"the input x of shape {_shape(given)}")  # type: ignore[arg-type]
    return size


_SPATIAL_LETTERS = {1: "L", 2: "HW", 3: "DHW"}


def layout_name(layout: str, rank: int) -> str:
    """``"NHWC"``/``"NCHW"`` written for ``rank`` spatial axes: ``NLC``/``NCL``, ``NHWC``/``NCHW``,
    ``NDHWC``/``NCDHW``."""
    spatial = _SPATIAL_LETTERS[rank]
    return f"N{spatial}C" if layout == "NHWC" else f"NC{spatial}"


def _shape(shape: tuple[Any, ...]) -> str:
    return str(shape) if len(shape) <= 8 else f"{str(shape[:8])[:-1]}, ...) "


def _example(spec: Any, layout: str, rank: int) -> str:
    ones = ", ".join("1" * rank)
    return f"(B, {ones}, {spec.in_channels})" if layout == "NHWC" else f"(B, {spec.in_channels}, {ones})"


class DeadPixelGuard:
    """Warns (once per input size, per layer) when :meth:`diagnose` finds what the user probably did not
    mean: output pixels the input never reaches, or an output no larger than the input."""

    def __init__(self, spec: Any) -> None:
        self._spec = spec
        self._seen: set[tuple[int, ...]] = set()

    def __call__(self, input_size: tuple[int | None, ...]) -> None:
        if input_size in self._seen or None in input_size:
            return
        self._seen.add(input_size)  # type: ignore[arg-type]
        report = self._spec.diagnose(input_size)
        if report.dead or report.not_upsampling:
            describe = getattr(self._spec, "describe", lambda: type(self._spec).__name__)
            warnings.warn(
                f"{describe()} on a {size_text(input_size)} input: {report.verdict}",  # type: ignore[arg-type]
                UpsampleWarning,
                stacklevel=_user_stacklevel(),
            )


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_FRAMEWORKS = ("torch", "keras", "flax", "jax", "jaxlib", "tensorflow", "optree", "treescope")


def _internal(filename: str) -> bool:
    """Whether a frame's file belongs to upsample, a framework or Python itself (not to the user)."""
    if filename.startswith(_PACKAGE) or filename.startswith("<"):
        return True
    parts = filename.replace("\\", "/").split("/")
    return any(part in _FRAMEWORKS for part in parts) or os.path.dirname(filename) == os.path.dirname(os.__file__)


def _user_stacklevel() -> int:
    """The ``stacklevel`` for a warning raised in the caller's caller that points at the user's own line:
    the first frame outside upsample and the frameworks (a layer call passes through several of theirs,
    e.g. Keras's traceback filtering or Flax's module wrappers, and through ``jax.jit`` while tracing)."""
    frame, level = sys._getframe(2), 2
    while frame.f_back is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level
