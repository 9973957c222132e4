"""A blur after the upsampler: a fixed separable FIR filter, the field's remedy for checkerboard artifacts.

Aitken et al. 2017 and Sugawara et al. 2019 low-pass an upsampler's output so that the sub-pixel phases (or the
transposed convolution's uneven overlap) blend. The libraries place it in three ways, all of them a :class:`Blur`:

- fastai ``PixelShuffle_ICNR(blur=True)``: ``ReplicationPad2d((1, 0, 1, 0))`` then ``AvgPool2d(2, stride=1)``
  (:meth:`Blur.fastai`);
- MONAI ``SubpixelUpsample`` / ``UpSample(mode="pixelshuffle", apply_pad_pool=True)``: zero padding of
  ``scale - 1`` before, then an average pool of ``scale`` at stride 1 (:meth:`Blur.monai`);
- StyleGAN2's ``upfirdn2d`` and diffusers' ``FirUpsample2D``: an FIR kernel such as ``(1, 3, 3, 1)``, normalised,
  zero padding placed for a factor of 2 (:meth:`Blur.fir`).

Per spatial axis the blur pads ``before`` and ``after`` rows (zeros, or copies of the edge row), then output pixel
``p`` is ``sum_t taps[t] * padded[p + t]`` (a cross-correlation, as a pool is). A blur keeps the size, so
``before + after == len(taps) - 1``; ``gain`` multiplies the whole filter once. It sits after the kind's
bias and before the residual is added (canonical order: ``y = blur(upsample(x) + bias) + skip``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from upsample.arguments import as_int, sequence_items
from upsample.messages import shown

MODES = ("zeros", "replicate")
"""How a blur pads: zero rows, or copies of the edge row (torch's ``ReplicationPad``, ONNX ``Pad`` ``edge``)."""
PRESETS = ("fastai", "monai", "fir")
"""The names a spec's ``blur=`` takes for :meth:`Blur.fastai`, :meth:`Blur.monai` (at the spec's factor) and
:meth:`Blur.fir`."""
MAX_TAPS = 64
"""Most taps per axis (the field's filters have 2 to 7)."""

Filter = tuple[float, ...]
"""One axis's taps."""


def _as_filter(value: Any, name: str) -> Filter:
    items = sequence_items(value)
    if not items or len(items) > MAX_TAPS:
        raise ValueError(f"{name} must be 1 to {MAX_TAPS} numbers, got {shown(value)}")
    taps = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) and not hasattr(item, "__float__"):
            raise TypeError(f"{name} must be numbers, got {shown(value)}")
        number = float(item)
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite numbers, got {shown(value)}")
        taps.append(number)
    if not any(taps):
        raise ValueError(f"{name} must have a tap that is not 0, got {shown(value)}")
    return tuple(taps)


def _per_axis(value: Any, rank: int | None, name: str, one: Callable[[Any, str], Any]) -> tuple[Any, ...]:
    """``one`` of ``value`` for every axis: a single value is every axis's (``rank`` None: kept as one)."""
    items = sequence_items(value)
    nested = items is not None and len(items) > 0 and all(sequence_items(item) is not None for item in items)
    if not nested:
        single = one(value, name)
        return (single,) if rank is None else (single,) * rank
    per_axis = tuple(one(item, f"{name}[{a}]") for a, item in enumerate(items or ()))
    if rank is not None and len(per_axis) == 1:
        return per_axis * rank
    if rank is not None and len(per_axis) != rank:
        raise ValueError(f"{name} must be one value or one per spatial axis ({rank}), got {shown(value)}")
    return per_axis


def _as_padding(value: Any, name: str) -> tuple[int, int]:
    items = sequence_items(value)
    if items is None or len(items) != 2:
        raise ValueError(f"{name} must be a (before, after) pair, got {shown(value)}")
    return as_int(f"{name}[0]", items[0], 0), as_int(f"{name}[1]", items[1], 0)


@dataclasses.dataclass(frozen=True, init=False)
class Blur:
    """A fixed separable FIR filter after an upsampler (the module says where the libraries use it).

    Args:
        taps: the filter along each axis, one sequence for every axis or one per spatial axis.
        padding: ``(before, after)`` rows per axis (one pair for every axis, or one per axis), summing to
            ``len(taps) - 1`` so the blur keeps the size.
        mode: ``"zeros"`` or ``"replicate"`` (copies of the edge row).
        gain: multiplies the whole filter (once, not per axis).
    """

    taps: tuple[Filter, ...]
    padding: tuple[tuple[int, int], ...]
    mode: str
    gain: float

    FIELDS: ClassVar[tuple[str, ...]] = ("taps", "padding", "mode", "gain")

    def __init__(self, taps: Any, padding: Any, mode: str = "zeros", gain: float = 1.0) -> None:
        self._set(taps, padding, mode, gain, None)

    def _set(self, taps: Any, padding: Any, mode: Any, gain: Any, rank: int | None) -> None:
        set_field = object.__setattr__.__get__(self)
        filters = _per_axis(taps, rank, "blur taps", _as_filter)
        pads = _per_axis(padding, len(filters) if len(filters) > 1 else rank, "blur padding", _as_padding)
        if len(filters) == 1 and len(pads) > 1:
            filters = filters * len(pads)
        if len(filters) != len(pads):
            raise ValueError(
                f"blur taps and padding must cover the same axes, got taps={shown(taps)}, padding={shown(padding)}"
            )
        for a, (axis_taps, (before, after)) in enumerate(zip(filters, pads, strict=True)):
            if before + after != len(axis_taps) - 1:
                raise ValueError(
                    f"blur padding must add len(taps) - 1 = {len(axis_taps) - 1} rows per axis so the blur keeps the "
                    f"size, got {(before, after)} on axis {a} for {len(axis_taps)} taps"
                )
        if mode not in MODES:
            raise ValueError(f"blur mode must be one of {list(MODES)}, got {shown(mode)}")
        if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not math.isfinite(gain) or gain == 0:
            raise ValueError(f"blur gain must be a finite number other than 0, got {shown(gain)}")
        set_field("taps", filters)
        set_field("padding", pads)
        set_field("mode", mode)
        set_field("gain", float(gain))

    # --- presets -------------------------------------------------------------------------------

    @classmethod
    def fastai(cls) -> Blur:
        """fastai's ``PixelShuffle_ICNR(blur=True)``: replicate one row before, average 2 at stride 1."""
        return cls((0.5, 0.5), (1, 0), "replicate")

    @classmethod
    def monai(cls, scale: int | Sequence[int] = 2) -> Blur:
        """MONAI's ``apply_pad_pool``: ``scale - 1`` zero rows before, average ``scale`` at stride 1, per axis."""
        factors = sequence_items(scale) or [scale]
        counts = [as_int("scale", factor, 1) for factor in factors]
        return cls([[1 / n] * n for n in counts], [(n - 1, 0) for n in counts], "zeros")

    @classmethod
    def fir(cls, taps: Sequence[float] = (1, 3, 3, 1), factor: int = 2, gain: float = 1.0) -> Blur:
        """An FIR filter, normalised to sum 1, with the zero padding StyleGAN2's ``upfirdn2d`` and diffusers'
        ``FirUpsample2D`` give it after upsampling by ``factor``: ``(k - f + 1) // 2 + f - 1`` before and
        ``(k - f) // 2`` after, ``(2, 1)`` for the default ``(1, 3, 3, 1)`` at 2."""
        axis_taps = _as_filter(taps, "taps")
        total = sum(axis_taps)
        if total == 0:
            raise ValueError(f"taps must not sum to 0 to be normalised, got {shown(taps)}")
        k, f = len(axis_taps), as_int("factor", factor, 1)
        before, after = _fir_before(k, f), (k - f) // 2
        if before + after != k - 1 or min(before, after) < 0:
            raise ValueError(f"an FIR of {k} taps after upsampling by {f} does not keep the size; give a Blur")
        return cls([t / total for t in axis_taps], (before, after), "zeros", gain)

    # --- binding to a spec ---------------------------------------------------------------------

    def for_rank(self, rank: int) -> Blur:
        """This blur with its taps and padding spelled out for each of ``rank`` spatial axes."""
        if len(self.taps) not in (1, rank) or len(self.padding) not in (1, rank):
            raise ValueError(f"blur has {len(self.taps)} axes of taps; the spec has {rank} spatial axes")
        bound = object.__new__(Blur)
        bound._set(self.taps, self.padding, self.mode, self.gain, rank)
        return bound

    @property
    def weights(self) -> tuple[Filter, ...]:
        """The taps each axis multiplies by: the gain folded into the first axis."""
        first = tuple(t * self.gain for t in self.taps[0])
        return (first, *self.taps[1:])

    def describe(self) -> str:
        """The blur in a few words, for messages and tables."""
        axes = [f"({', '.join(f'{t:g}' for t in axis)})" for axis in self.taps]
        gain = "" if self.gain == 1 else f", gain {self.gain:g}"
        return f"blur {axes[0] if len(set(axes)) == 1 else ' x '.join(axes)}, {self.mode} padding{gain}"

    def flops(self, pixels: int, channels: int) -> int:
        """Floating-point operations of the blur on ``pixels`` output pixels of ``channels`` (a multiply-add: 2)."""
        return 2 * pixels * channels * sum(sum(1 for t in axis if t) for axis in self.taps)

    def to_dict(self) -> dict[str, Any]:
        """The blur as JSON-ready values (a spec's ``"blur"`` key)."""
        return {
            "taps": [list(axis) for axis in self.taps],
            "padding": [list(pair) for pair in self.padding],
            "mode": self.mode,
            "gain": self.gain,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Blur:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or set(data) != set(cls.FIELDS):
            raise ValueError(f"a spec's blur must be a dict with keys {list(cls.FIELDS)}, got {shown(data)}")
        return cls(data["taps"], data["padding"], data["mode"], data["gain"])

    # --- what it does to coverage and to arrays ------------------------------------------------

    def sources(self, axis: int, length: int, position: int) -> list[tuple[int, float]]:
        """The (source pixel, weight) pairs output ``position`` reads on ``axis`` (zero rows left out)."""
        before = self.padding[axis][0]
        pairs = []
        for t, weight in enumerate(self.weights[axis]):
            source = position + t - before
            if not 0 <= source < length:
                if self.mode == "zeros":
                    continue
                source = min(max(source, 0), length - 1)
            if weight:
                pairs.append((source, weight))
        return pairs

    def axis_coverage(self, axis: int, counts: Sequence[int]) -> list[int]:
        """Coverage along ``axis`` after the blur: each pixel sums the counts of the pixels its nonzero taps read."""
        return [sum(counts[s] for s, _ in self.sources(axis, len(counts), p)) for p in range(len(counts))]

    def axis_weighted(self, axis: int, values: Sequence[float]) -> list[float]:
        """``values`` along ``axis`` blurred with the taps' weights (what a constant input's overlap becomes)."""
        return [sum(values[s] * w for s, w in self.sources(axis, len(values), p)) for p in range(len(values))]

    def reads_within(self, axis: int, length: int, position: int, inside: set[int]) -> bool:
        """Whether every pixel that ``position`` reads on ``axis`` is in ``inside`` (no padding read)."""
        before = self.padding[axis][0]
        return all(
            0 <= position + t - before < length and position + t - before in inside for t in range(len(self.taps[axis]))
        )

    def apply(
        self,
        x: Any,
        axes: Sequence[int],
        concat: Callable[[list[Any], int], Any],
        zeros_like: Callable[[Any], Any],
    ) -> Any:
        """``x`` blurred along its spatial ``axes`` with any framework's ops: ``concat(parts, axis)`` pads (zero rows
        from ``zeros_like``, or copies of the edge row), then slices weighted and summed. Needs no static size."""
        for axis_index, axis in enumerate(axes):
            before, after = self.padding[axis_index]
            weights = self.weights[axis_index]
            k = len(weights)

            first, last = _window(x, axis, 0, 1), _window(x, axis, -1, None)
            head = [zeros_like(first) if self.mode == "zeros" else first] * before
            tail = [zeros_like(last) if self.mode == "zeros" else last] * after
            padded = concat([*head, x, *tail], axis) if before or after else x
            total = None
            for t, weight in enumerate(weights):
                if weight:
                    term = _window(padded, axis, t, t - (k - 1) or None) * weight
                    total = term if total is None else total + term
            x = total
        return x


def fir_upsampling(taps: Sequence[float], factor: int, kernel: Any = None) -> tuple[Any, tuple[int, int]]:
    """StyleGAN2's and diffusers' 2-D FIR upsampling by ``factor`` (``upfirdn2d``, the taps normalised to sum
    ``factor`` per axis) as one transposed convolution of stride ``factor``: its canonical kernel ``(kh, kw, C_in,
    C_out)`` and its crop ``(begin, end)`` on each axis. Without ``kernel``: zero insertion then the FIR, whose
    kernel is the FIR itself (``(k, k, 1, 1)``, for each channel). With a transposed convolution's canonical
    ``kernel`` before the FIR: that kernel convolved in full with the FIR, cropped as ``upfirdn2d`` pads it, to
    ``factor * n`` pixels."""
    import numpy as np

    axis = np.asarray(taps, dtype=np.float64)
    axis = axis / axis.sum() * factor
    k = len(axis)
    fir = np.outer(axis, axis)[:, :, None, None]
    if kernel is None:
        before = _fir_before(k, factor)
        return fir, (k - 1 - before, before - factor + 1)
    kernel = np.asarray(kernel, dtype=np.float64)
    size = kernel.shape[0]
    full = np.zeros((size + k - 1, size + k - 1, *kernel.shape[2:]))
    for i, j in np.ndindex(k, k):
        full[i : i + size, j : j + size] += fir[i, j] * kernel
    pad_value = (k - factor) - (size - 1)
    begin = k - 1 - _fir_before(pad_value + factor, factor)
    return full, (begin, size + k - 1 - factor - begin)


def _fir_before(k: int, factor: int) -> int:
    """The zero rows ``upfirdn2d`` puts before an FIR of ``k`` taps after upsampling by ``factor``."""
    return (k - factor + 1) // 2 + factor - 1


def _window(x: Any, axis: int, start: int, stop: int | None) -> Any:
    """``x[start:stop]`` along ``axis`` (a negative ``stop`` counts from the end, so no size need be known)."""
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def blur_of(value: Any, rank: int, factor: Sequence[int] | None) -> Blur | None:
    """A spec's ``blur=`` argument as a :class:`Blur` bound to ``rank`` axes: ``None``, a :class:`Blur`, one of
    :data:`PRESETS`, or a ``to_dict()`` mapping. ``"monai"`` averages over the spec's integer ``factor``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = Blur.from_dict(value)
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"blur must be None, a Blur or one of {list(PRESETS)}, got {shown(value)}")
        if value == "monai":
            if factor is None:
                raise ValueError("blur='monai' averages over the spec's integer scale; this spec has none")
            value = Blur.monai(factor)
        else:
            value = getattr(Blur, value)()
    if not isinstance(value, Blur):
        raise TypeError(f"blur must be None, a Blur or one of {list(PRESETS)}, got {shown(value)}")
    return value.for_rank(rank)
