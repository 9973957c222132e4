"""Every padding form a spec takes, as the canonical per-axis crops (docs/conventions.md has the mapping):
torch-style ``padding``/``output_padding``, Keras-style ``"same"``/``"valid"``, and explicit crops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from upsample import geometry
from upsample.arguments import Axes, IntOrAxes, as_axes, sequence_items
from upsample.messages import shown

Crops = tuple[tuple[int, int], ...]
"""One ``(begin, end)`` crop per spatial axis."""
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]
PADDING_MODES = ("same", "valid")


def is_explicit_crops(padding: Any, rank: int | None = None) -> bool:
    """Whether ``padding`` is one ``(begin, end)`` sequence per axis (``rank`` of them, when given)."""
    items = sequence_items(padding)
    if items is None or not items or (rank is not None and len(items) != rank):
        return False
    return all(sequence_items(axis) is not None for axis in items)


def crops_words(rank: int) -> str:
    """How explicit crops are written for ``rank`` spatial axes, for messages."""
    return {1: "((begin, end),)", 2: "((top, bottom), (left, right))"}.get(
        rank, "((front, back), (top, bottom), (left, right))"
    )


def crops_from_padding(padding: Padding, output_padding: IntOrAxes | None, kernel: Axes, stride: Axes) -> Crops:
    """Normalise every accepted padding form to per-axis crops (docs/conventions.md has the mapping)."""
    rank = len(kernel)
    op = None if output_padding is None else as_axes("output_padding", output_padding, rank, 0)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in PADDING_MODES:
            one_per_axis = "an (h, w) pair" if rank == 2 else f"{rank} ints"
            raise ValueError(
                f"padding must be an int, {one_per_axis}, 'same', 'valid' or crops {crops_words(rank)}, "
                f"got {shown(padding)}"
            )
        return tuple(
            geometry.crop_from_keras(mode, kernel[a], stride[a], None if op is None else op[a]) for a in range(rank)
        )
    extra = op or (0,) * rank
    if is_explicit_crops(padding, rank):
        items = sequence_items(padding)
        assert items is not None
        axes = tuple(as_axes(f"padding[{a}] (crop)", items[a], 2, None) for a in range(rank))
        return tuple((axes[a][0], axes[a][1] - extra[a]) for a in range(rank))
    torch_padding = as_axes("padding", padding, rank, 0)
    return tuple(geometry.crop_from_torch(torch_padding[a], extra[a]) for a in range(rank))
