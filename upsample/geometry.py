"""Per-axis transposed-convolution arithmetic shared by the spec and every backend.

Everything here is pure Python on ints, one spatial axis at a time, so every backend derives its
native arguments, slices and pads from the same numbers (the way Keras keeps its padding arithmetic
in ``backend_utils.py``). Conventions are those of docs/conventions.md: the *full* output of an axis has
``(i - 1) * s + k`` pixels, input pixel ``j`` reaches full pixel ``j * s + t`` through tap ``t``,
and a crop ``(begin, end)`` removes pixels from each side of the full output (a negative crop adds
rows that only the bias reaches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from upsample import conv_geometry

Crop = tuple[int, int]


def extent(kernel: int, dilation: int = 1) -> int:
    """The pixels a kernel of ``kernel`` taps spans with ``dilation``: ``d * (k - 1) + 1``. Every crop and
    padding formula of this module holds for a dilated kernel with ``kernel`` replaced by its extent."""
    return dilation * (kernel - 1) + 1


def full_length(input_length: int, kernel: int, stride: int) -> int:
    """Length of the uncropped transposed-convolution output (``kernel``: the extent, for a dilated one)."""
    return (input_length - 1) * stride + kernel


def output_length(input_length: int, kernel: int, stride: int, crop: Crop) -> int:
    """Length of the output after the crop (may be <= 0 for an invalid combination)."""
    return full_length(input_length, kernel, stride) - crop[0] - crop[1]


# --- familiar arguments -> crops -------------------------------------------------------------


def crop_from_torch(padding: int, output_padding: int) -> Crop:
    """torch ``ConvTranspose2d(padding=p, output_padding=op)`` crops ``(p, p - op)``."""
    return (padding, padding - output_padding)


def crop_from_lax(pads: Crop, kernel: int) -> Crop:
    """lax / Flax explicit pads ``(lo, hi)`` on the dilated input, kernel flipped."""
    return (kernel - 1 - pads[0], kernel - 1 - pads[1])


def crop_to_lax(crop: Crop, kernel: int) -> Crop:
    """Inverse of :func:`crop_from_lax`: the lax pads that produce ``crop``."""
    return (kernel - 1 - crop[0], kernel - 1 - crop[1])


def crop_from_keras(mode: str, kernel: int, stride: int, output_padding: int | None) -> Crop:
    """Keras ``Conv2DTranspose(padding=mode, output_padding=...)`` as crops.

    Follows Keras's own conversion (``_convert_conv_transpose_padding_args_from_keras_to_jax`` in
    ``keras/src/backend/common/backend_utils.py``); Flax's string paddings follow the same rule.
    """
    if mode == "valid":
        if output_padding is None:
            return (0, min(0, kernel - stride))
        return (0, -output_padding)
    if mode == "same":
        if output_padding is None:
            pad_len = stride + kernel - 2
        else:
            pad_len = kernel + kernel % 2 - 2 + output_padding
        left = min(-(-pad_len // 2), kernel - 1)
        return crop_from_lax((left, pad_len - left), kernel)
    raise ValueError(f"padding mode must be 'same' or 'valid', got {mode!r}")


# --- crops -> native arguments ---------------------------------------------------------------


class NativeSplit(NamedTuple):
    """A crop split into what a native layer does and what is left to slice or pad afterwards."""

    native: Crop
    """The crop the native layer applies itself."""
    rest: Crop
    """What remains: positive values are sliced off, negative values are padded (bias included)."""


def split_for_torch(crop: Crop, stride: int) -> NativeSplit:
    """Native torch crop when ``crop`` is ``(p, p - op)`` with ``p >= 0, 0 <= op < stride``.

    Otherwise torch computes the full output (``padding=0, output_padding=0``) and the whole crop
    is left to slice and pad.
    """
    begin, end = crop
    if begin >= 0 and 0 <= begin - end < stride:
        return NativeSplit(crop, (0, 0))
    return NativeSplit((0, 0), crop)


def torch_args(crop: Crop) -> tuple[int, int]:
    """``(padding, output_padding)`` for a crop that :func:`split_for_torch` made native."""
    return crop[0], crop[0] - crop[1]


def split_for_keras(crop: Crop, stride: int) -> NativeSplit:
    """Native Keras ``"valid"`` crop ``(0, -op)`` with ``0 <= op < stride``, else the full output."""
    begin, end = crop
    if begin == 0 and 0 <= -end < stride:
        return NativeSplit(crop, (0, 0))
    return NativeSplit((0, 0), crop)


def keras_same(crop: Crop, kernel: int, stride: int) -> bool:
    """Whether Keras ``padding="same"`` (no ``output_padding``) is exactly ``crop``, used natively only
    when it crops both sides alike (``k >= s``, ``k - s`` even): the one-pixel-shift cases are where the
    frameworks' "same" disagree (docs/padding.md), so they stay on the ``"valid"`` + slice path."""
    symmetric = kernel >= stride and (kernel - stride) % 2 == 0
    return symmetric and crop == crop_from_keras("same", kernel, stride, None)


class KerasArgs(NamedTuple):
    """``Conv{1,2,3}DTranspose`` arguments for a spec's crops, and what is left to slice or pad afterwards."""

    padding: str
    output_padding: tuple[int, ...] | None
    rest: tuple[Crop, ...]


def keras_args(crops: Sequence[Crop], kernel: Sequence[int], stride: Sequence[int]) -> KerasArgs:
    """Keras's own ``"same"`` when :func:`keras_same` holds on every axis (one padding mode serves
    them all), else ``"valid"`` + ``output_padding`` from :func:`split_for_keras` per axis."""
    axes = range(len(crops))
    if all(keras_same(crops[a], kernel[a], stride[a]) for a in axes):
        return KerasArgs("same", None, ((0, 0),) * len(crops))
    splits = [split_for_keras(crops[a], stride[a]) for a in axes]
    return KerasArgs("valid", tuple(-split.native[1] for split in splits), tuple(split.rest for split in splits))


def split_for_lax(crop: Crop, kernel: int) -> NativeSplit:
    """The part of ``crop`` that Flax's ``ConvTranspose`` applies as lax pads ``(k-1-begin, k-1-end)``.

    Lax accepts any pads, but the native crop is kept within ``0..k-1`` per side (pads ``0..k-1``):
    XLA:CPU computes float32 convolutions with a negative low pad wrongly (openxla/xla#48713; seen
    here as wrong kernel gradients), and a pad above ``k - 1`` would put a negative pad into the
    input gradient's convolution, whose pads are ``(k-1-lo, k-1-hi)``. Pads ``(0, 0)`` on an axis
    with ``k > 1`` become ``(0, 1)``: jaxlib 0.10's XLA aborts the process when it swaps the operands
    of a convolution with such an axis (measured here, e.g. kernel 2, stride 2).
    """
    native = (min(max(crop[0], 0), kernel - 1), min(max(crop[1], 0), kernel - 1))
    if kernel > 1 and native == (kernel - 1, kernel - 1):
        native = (kernel - 1, kernel - 2)
    return NativeSplit(native, (crop[0] - native[0], crop[1] - native[1]))


def slice_and_pad(crop: Crop, length: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """How to apply ``crop`` to an axis of ``length`` pixels: keep ``[start, stop)``, then pad
    ``(pad_lo, pad_hi)`` rows.

    The output is the window ``[begin, length - end)`` of the full axis; window positions outside
    ``[0, length)`` become padding (a crop may even move the window entirely off the full output).
    """
    begin, end = crop
    stop_window = length - end
    start = min(max(begin, 0), length)
    stop = max(min(stop_window, length), start)
    pad_lo = max(0, min(stop_window, 0) - begin)
    pad_hi = max(0, stop_window - max(length, begin))
    return (start, stop), (pad_lo, pad_hi)


def slice_and_pad_unknown(crop: Crop) -> tuple[tuple[int, int | None], tuple[int, int]]:
    """:func:`slice_and_pad` for an axis whose length is known only at run time: keep ``[start, stop)``
    with ``stop`` counted from the end (``None``: to the end), then pad ``(pad_lo, pad_hi)``.

    Equal to :func:`slice_and_pad` whenever the crop's window overlaps the full axis (a crop of at most
    ``length`` on each side leaving at least one pixel), which any layer with an output has on the sizes
    it is used with.
    """
    begin, end = crop
    return (max(begin, 0), -end if end > 0 else None), (max(-begin, 0), max(-end, 0))


def adds_rows(crops: Sequence[Crop]) -> bool:
    """Whether :func:`slice_and_pad` pads any axis, i.e. some crop is negative: the added rows and
    columns get the bias alone (docs/conventions.md), so a backend cannot fold the bias in before cropping."""
    return any(side < 0 for crop in crops for side in crop)


# --- phase decomposition: a transposed convolution as matmuls and shifted adds -----------------


def phase_taps(kernel: int, stride: int, phase: int) -> range:
    """The kernel taps that land in ``phase`` (full pixels ``q * s + phase``): ``phase, phase + s, ...``
    below ``kernel``, so ``ceil(k / s)`` taps for the first ``k % s`` phases, ``floor(k / s)`` for the rest
    (none for a phase ``>= k``). Full pixel ``q * s + p`` is ``sum_m x[q - m] @ W[p + m * s]``."""
    return range(phase, kernel, stride)


class PhaseStep(NamedTuple):
    """Step ``m`` of an axis's phase split: tap ``m * s + p`` of each phase ``p < phases``.

    The taps per phase never grow with ``p`` (:func:`phase_taps`), so the phases that have an ``m``-th tap
    are the first ``min(s, k - m * s)``: one product of the input with these taps gives them all, with no
    zero taps, and the missing phases ``phases..s-1`` are zero rows added after the product. Input pixel
    ``j`` of the product lands on phase-plane row ``j + m - first`` (``first``: :attr:`PhaseSplit.first_row`).
    """

    first_tap: int
    """``m * s``: the taps of this step are ``first_tap .. first_tap + phases - 1``."""
    phases: int
    """How many phases (the first ones) get a tap at this step."""
    rows: tuple[tuple[int, int], tuple[int, int]]
    """:func:`slice_and_pad` of the product's input rows onto the phase plane: keep ``[start, stop)``, then
    add ``(before, after)`` zero rows."""


class PhaseSplit(NamedTuple):
    """One axis of a cropped transposed convolution as ``stride`` interleaved phase planes.

    Row ``r`` of every phase plane is full-output row ``first_row + r`` of its phase (full pixel
    ``(first_row + r) * s + p``); the planes cover the crop's window, negative crops included (rows
    outside the full output stay zero), and interleaved (``rows * s`` pixels) the output is ``[keep)``.
    """

    steps: tuple[PhaseStep, ...]
    """One per tap of the first phase (``ceil(k / s)``), summed into the phase planes."""
    first_row: int
    rows: int
    """Rows of each phase plane."""
    keep: tuple[int, int]
    """``[start, stop)`` of the interleaved axis that is the cropped output (``start < s``)."""


def phase_split(input_length: int, kernel: int, stride: int, crop: Crop) -> PhaseSplit:
    """The phase split of an axis of ``input_length`` pixels, ``kernel`` taps and ``stride``, cropped by ``crop``.

    Only the phase rows that reach the crop's window ``[begin, full - end)`` are computed: rows
    ``floor(begin / s) .. ceil((full - end) / s) - 1``. Each step's product rows are sliced and padded onto
    that window (zero rows where the window leaves the input), so a crop costs no pass of its own beyond
    the final slice of fewer than ``s`` pixels per side.
    """
    begin, end = crop
    stop = full_length(input_length, kernel, stride) - end
    first, last = begin // stride, -(-stop // stride)
    steps = tuple(
        PhaseStep(
            m * stride,
            min(stride, kernel - m * stride),
            slice_and_pad((first - m, input_length - last + m), input_length),
        )
        for m in range(-(-kernel // stride))
    )
    start = begin - first * stride
    return PhaseSplit(steps, first, last - first, (start, start + stop - begin))


def nearest_resize_as_transposed(kernel: int, scale: int) -> tuple[tuple[tuple[int, ...], ...], Crop]:
    """Nearest upsampling by ``scale`` then a ``kernel``-tap "same" convolution
    (:func:`conv_geometry.same_padding`) as one transposed convolution with stride ``scale``:
    ``(matrix, crop)``, where the transposed kernel is ``matrix @ K`` per axis (``kernel + scale - 1`` rows of
    0/1: row ``t'`` sums the conv taps ``k-1-t' .. k-2-t'+scale``, the ones that read the input pixel the
    phase-split tap ``t'`` reads).

    On the small input that is ``(k + s - 1)^2`` taps instead of ``k^2`` on the ``s^2``-times larger
    resized one (k3 s2: 16 vs 36 per input pixel), and the phase split runs it without dilated zeros.
    """
    before = conv_geometry.same_padding(kernel)[0]
    matrix = tuple(
        tuple(int(kernel - 1 - row <= tap < kernel - 1 - row + scale) for tap in range(kernel))
        for row in range(kernel + scale - 1)
    )
    return matrix, (kernel - 1 - before, before)


# --- residual and coverage -------------------------------------------------------------------


def nearest_indices(input_length: int, output_length: int) -> tuple[int, ...]:
    """Source index of each output pixel for nearest upsampling: ``floor((dst + 0.5) * in / out)``.

    Exact integer arithmetic, so every backend gathers the same pixels for any scale.
    """
    return tuple(((2 * dst + 1) * input_length) // (2 * output_length) for dst in range(output_length))


def nearest_gather(input_length: int, output_length: int) -> tuple[int, ...] | None:
    """The indices a backend gathers for the residual along one axis, or ``None`` when no gather is
    needed: a length-1 axis broadcasts, and an identity gather is skipped."""
    indices = nearest_indices(input_length, output_length)
    if input_length == 1 or indices == tuple(range(input_length)):
        return None
    return indices


def coverage(input_length: int, kernel: int, stride: int, crop: Crop, dilation: int = 1) -> list[int]:
    """Number of (input pixel, tap) pairs that reach each output pixel of one axis.

    Tap ``t`` of input pixel ``j`` reaches full pixel ``j * s + t * d``: for each tap the reached output pixels
    are an arithmetic run of step ``s``, added as a +1 / -1 pair on a difference array of step ``s`` and summed
    once, so the work is ``O(kernel + output)``, not ``O(input * kernel)``.
    """
    begin = crop[0]
    length = max(output_length(input_length, extent(kernel, dilation), stride, crop), 0)
    counts = [0] * length  # O(output), never O(stride): a stride of 10**8 on a 1-pixel input is 3 pixels
    for tap in range(kernel):
        offset = tap * dilation - begin  # output pixel of input pixel 0
        first = max(0, -(offset // stride))  # the first input pixel landing at or after output pixel 0
        last = min(input_length - 1, (length - 1 - offset) // stride)
        if first <= last:
            counts[first * stride + offset] += 1
            end = (last + 1) * stride + offset  # the run's end, past the output for the last pixels
            if end < length:
                counts[end] -= 1
    for position in range(stride, length):
        counts[position] += counts[position - stride]
    return counts


def interior(input_length: int, kernel: int, stride: int, crop: Crop) -> range:
    """Output positions away from the borders, where every tap that could land does land (``kernel``: the
    extent, for a dilated one).

    In full-output coordinates these are ``k - 1 .. i * s - 1``; without dilation, overlap there is uniform
    exactly when ``k % s == 0`` (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
    """
    n = output_length(input_length, kernel, stride, crop)
    return range(max(kernel - 1 - crop[0], 0), min(input_length * stride - crop[0], n))


def integer_ratio(length_at: Callable[[int], int], probe: int = 1024) -> int | None:
    """The integer ``n`` with ``length_at(i) == n * i`` for every input length ``i``, else ``None``.

    Every kind's output length is affine in its input length (transposed ``(i - 1) * s + k - begin - end``,
    sub-pixel and resize ``r * i``), so its values at ``probe`` and ``2 * probe`` (large enough for any crop
    to leave an output) decide it: a transposed axis has the ratio ``s`` exactly when ``k - s == begin + end``.
    """
    try:
        first, second = length_at(probe), length_at(2 * probe)
    except ValueError:  # crops that leave no output at this length leave none at small lengths either
        return None
    slope, offset = divmod(second - first, probe)
    if offset or first != slope * probe or slope < 1:
        return None
    return slope
