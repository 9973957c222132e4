"""Per-axis arithmetic of the two upsamplers built on a stride-1 convolution, shared by the spec and every
backend: the "same" convolution's padding and coverage and the N-d pixel shuffle's channel order (a resize's
taps are :mod:`upsample.interpolation`'s). Pure Python on ints, like :mod:`upsample.geometry`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def same_padding(kernel: int) -> tuple[int, int]:
    """Zero rows ``(before, after)`` of a stride-1 "same" convolution: ``(k - 1) // 2`` before, the rest
    after (torch ``padding="same"``, TF/Keras/Flax ``"SAME"`` at stride 1)."""
    before = (kernel - 1) // 2
    return before, kernel - 1 - before


def same_coverage(length: int, kernel: int, dilation: int = 1) -> list[int]:
    """Per output pixel of a stride-1 "same" convolution, how many taps read the input (not padding); with
    ``dilation`` tap ``t`` reads ``t * d`` pixels on, and the padding is that of the extent ``d * (k - 1) + 1``."""
    before = same_padding(dilation * (kernel - 1) + 1)[0]
    return [
        sum(0 <= position + tap * dilation - before < length for tap in range(kernel)) for position in range(length)
    ]


SHUFFLE_ORDERS = ("CRD", "DCR")


def shuffle_channel(order: str, channel: int, subpixel: Sequence[int], channels: int, scale: Sequence[int]) -> int:
    """The channel a pixel shuffle of ``order`` reads for output channel ``channel`` at ``subpixel`` (one index
    per spatial axis, each below that axis's ``scale``).

    CRD (torch ``PixelShuffle``, ONNX ``DepthToSpace`` mode CRD, MONAI's N-d ``pixelshuffle``):
    ``c * prod(r) + flat(i_1, ..., i_d)``; DCR (``tf.nn.depth_to_space``): ``flat(i_1, ..., i_d) * C + c``, where
    ``flat`` is the row-major index of the sub-pixel (``i * r_w + j`` in 2-D).
    """
    flat = 0
    for index, factor in zip(subpixel, scale, strict=True):
        flat = flat * factor + index
    if order == "CRD":
        return channel * math.prod(scale) + flat
    if order == "DCR":
        return flat * channels + channel
    raise ValueError(f"order must be one of {SHUFFLE_ORDERS}, got {order!r}")


def subpixels(scale: Sequence[int]) -> list[tuple[int, ...]]:
    """Every sub-pixel index of a shuffle by ``scale``, in row-major order."""
    return list(itertools.product(*(range(factor) for factor in scale)))


def shuffle_permutation(order: str, channels: int, scale: Sequence[int]) -> tuple[int, ...]:
    """For each channel of a shuffle that reads ``order``, the canonical (CRD) channel it must hold:
    ``native = canonical[..., permutation]`` converts a kernel's output channels (and the bias) once."""
    permutation = [0] * (channels * math.prod(scale))
    for channel in range(channels):
        for subpixel in subpixels(scale):
            native = shuffle_channel(order, channel, subpixel, channels, scale)
            permutation[native] = shuffle_channel("CRD", channel, subpixel, channels, scale)
    return tuple(permutation)


def inverse_permutation(permutation: tuple[int, ...]) -> tuple[int, ...]:
    """``inverse[permutation[n]] = n``: undoes :func:`shuffle_permutation` (native -> canonical)."""
    inverse = [0] * len(permutation)
    for native, canonical in enumerate(permutation):
        inverse[canonical] = native
    return tuple(inverse)
