"""ONNX ``ConvTranspose`` padding arithmetic, per axis, in the crops of docs/conventions.md (pure Python).

Reading: every attribute form of a ``ConvTranspose`` node (``pads``, ``output_padding``,
``output_shape``, ``auto_pad``) becomes a crop ``(begin, end)`` off the full output of
``(i - 1) * s + k`` pixels. Every function here takes ``k`` as the kernel's extent ``(k - 1) * d + 1`` (the
kernel size when not dilated): ONNX's formulas have ``k`` only in that form. The operator's text
(onnx/docs/Operators.md, ConvTranspose, opset 11+):

- output size ``s * (i - 1) + output_padding + ((k - 1) * d + 1) - pads[begin] - pads[end]``;
- with ``output_shape``: ``total = s * (i - 1) + output_padding + ((k - 1) * d + 1) - output_shape``;
  ``SAME_UPPER``: ``pads = (total // 2, total - total // 2)``, otherwise (``NOTSET``, ``SAME_LOWER``,
  ``VALID``) ``pads = (total - total // 2, total // 2)``: the odd pixel is cropped at the start;
- ``SAME_UPPER``/``SAME_LOWER``: output ``i * s``, the odd pixel of the total padding at the end
  (``SAME_UPPER``) or the start (``SAME_LOWER``); ``VALID``: no padding.

Where onnxruntime (>= 1.13, measured with 1.32; 1.12 and older swapped ``SAME_UPPER``/``SAME_LOWER``
for this operator, onnxruntime#9370, #11927, PR#12537) and the text disagree, the runtime wins:

- ``SAME_*`` with ``k + output_padding < s``: the negative total padding is clamped to 0, so the
  output has ``(i - 1) * s + k + output_padding`` pixels, not ``i * s``;
- ``output_shape`` up to ``s - 1`` pixels longer than the full output (a negative total) is accepted
  and adds rows at the end (crop ``(0, full - output_shape)``); longer ones are refused;
- ``output_shape`` makes the runtime ignore ``pads``; ``output_padding >= s``, negative ``pads`` and
  ``pads`` together with ``auto_pad`` are refused.

Writing: :func:`export_axis` splits a spec's crop into non-negative ``pads`` a ``ConvTranspose`` takes
(no ``auto_pad``, ``output_shape`` or ``output_padding``, so runtimes cannot disagree), plus rows to pad
afterwards (they get the bias alone), from :func:`upsample.geometry.slice_and_pad`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from upsample import geometry
from upsample.geometry import Crop

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _split(total: int, auto_pad: str) -> Crop:
    """``pads`` for a non-negative total padding: the odd pixel at the end for ``SAME_UPPER``, else at the start."""
    if auto_pad == "SAME_UPPER":
        return (total // 2, total - total // 2)
    return (total - total // 2, total // 2)


def crop_from_onnx(
    input_length: int,
    kernel: int,
    stride: int,
    *,
    pads: Crop = (0, 0),
    output_padding: int = 0,
    auto_pad: str = "NOTSET",
    output_shape: int | None = None,
) -> Crop:
    """The crop a ``ConvTranspose`` node applies along one axis, as onnxruntime computes it.

    ``kernel`` is the extent ``(k - 1) * dilation + 1``; ``input_length`` matters only for ``output_shape``.
    Raises ``ValueError`` for what onnxruntime refuses (see the module docstring).
    """
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"auto_pad must be one of {AUTO_PADS}, got {auto_pad!r}")
    if not 0 <= output_padding < stride:
        raise ValueError(
            f"output_padding must be in 0..{stride - 1} (below the stride; onnxruntime refuses others), got "
            f"{output_padding}"
        )
    if min(pads) < 0:
        raise ValueError(f"pads must not be negative (ONNX; onnxruntime refuses them), got {pads}")
    if auto_pad != "NOTSET" and pads != (0, 0):
        raise ValueError(f"pads {pads} cannot be used together with auto_pad={auto_pad!r} (ONNX; onnxruntime refuses)")
    full = geometry.full_length(input_length, kernel, stride)
    if output_shape is not None:
        total = full + output_padding - output_shape
        if output_shape > full + stride - 1:
            raise ValueError(
                f"output_shape {output_shape} does not fit an input of {input_length} pixels (kernel extent {kernel}, "
                f"stride {stride}: at most {full + stride - 1}); onnxruntime refuses it"
            )
        begin, end = (0, total) if total < 0 else _split(total, auto_pad)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = _split(max(0, kernel + output_padding - stride), auto_pad)
    elif auto_pad == "VALID":
        begin, end = 0, 0
    else:
        begin, end = pads
    return (begin, end - output_padding)


class ExportAxis(NamedTuple):
    """How a ``ConvTranspose`` with plain ``pads`` plus a ``Slice`` and a ``Pad`` apply a crop on one axis."""

    pads: Crop
    """Non-negative ``pads`` of the ``ConvTranspose``."""
    slice: Crop | None
    """``[start, stop)`` to keep of the conv output, only when the crop's window misses the full output
    entirely (then the conv runs unpadded and the slice is empty)."""
    rows: Crop
    """Zero rows to add before and after (rows that get the bias alone)."""


def export_axis(input_length: int, kernel: int, stride: int, crop: Crop) -> ExportAxis:
    """Split ``crop`` into what ``ConvTranspose`` ``pads`` express and what is padded afterwards (``kernel``: the
    extent)."""
    full = geometry.full_length(input_length, kernel, stride)
    (start, stop), rows = geometry.slice_and_pad(crop, full)
    if stop > start:
        return ExportAxis((start, full - stop), None, rows)
    return ExportAxis((0, 0), (start, stop), rows)


def onnx_pads(axes: Sequence[Crop]) -> list[int]:
    """ONNX's ``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`` order from per-axis ``(begin, end)``."""
    return [axis[0] for axis in axes] + [axis[1] for axis in axes]


def export_axis_dynamic(kernel: int, stride: int, crop: Crop) -> ExportAxis:
    """:func:`export_axis` for an axis whose length is known only at run time.

    The same ``pads`` and rows as at any fixed size when the crop's window overlaps the full output at
    every input length the layer has an output for (it does at the shortest, as the full output grows
    with the input). Otherwise (a crop removing the whole full output at the shortest input, its window
    brought back by rows a negative crop adds) the conv runs unpadded, its rows are padded first and
    ``slice`` is kept of that, its stop counted from the end (``None``: to the end), exact at every length.
    """
    begin, end = crop
    shortest = 1 + max(0, -(-(1 + begin + end - kernel) // stride))  # the shortest input with an output
    (start, stop), rows = geometry.slice_and_pad_unknown(crop)
    pads = (start, 0 if stop is None else -stop)
    if geometry.full_length(shortest, kernel, stride) > sum(pads):
        return ExportAxis(pads, None, rows)
    return ExportAxis((0, 0), (start, stop), rows)  # type: ignore[arg-type]
