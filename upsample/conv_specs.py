"""``SubpixelSpec``: sub-pixel convolution (Shi et al. 2016), a convolution to ``C_out * r_h * r_w`` channels,
then a pixel shuffle in canonical CRD order (conv channel ``c * r_h * r_w + i * r_w + j`` becomes output channel
``c`` at sub-pixel ``(i, j)``, as torch ``PixelShuffle``). The convolution is :mod:`upsample.conv_kind`'s; the
resize-convolution, the other kind built on it, is :mod:`upsample.resize_spec` (imported here too, where the
two have always been read from).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from upsample import conv_geometry
from upsample.arguments import Axes, IntOrAxes, axis_names
from upsample.blur import Blur
from upsample.conv_kind import ConvKind
from upsample.resize_spec import ResizeSpec
from upsample.spec import Residual

__all__ = ["ResizeSpec", "SubpixelSpec"]


@dataclasses.dataclass(frozen=True, init=False)
class SubpixelSpec(ConvKind):
    """Sub-pixel convolution: a stride-1 "same" convolution to ``C_out * r_h * r_w`` channels, then a CRD
    pixel shuffle by ``scale`` (Shi et al. 2016; torch ``nn.Conv2d`` + ``nn.PixelShuffle``).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (default: ``in_channels``).
        scale: the shuffle factor ``r``, an int or one per spatial axis (``(r_h, r_w)`` in 2-D).
        kernel_size: int or one per spatial axis; even sizes pad one more row after than before.
        residual: ``None``, ``"nearest"`` (identity skip) or ``"projection"`` (learned 1x1 map).
        use_bias: whether the convolution adds a bias (``(C_conv,)``, one value per sub-pixel channel).
        spatial_dims: 1, 2 or 3; default: the length of the per-axis tuples given, else 2.
        groups: the convolution's channel groups (torch ``Conv`` ``groups``); divides both channel counts.
        dilation: the convolution's dilation, an int or one per axis (the padding is that of the dilated extent).
        blur: a fixed low-pass filter after the layer (:class:`~upsample.Blur`, or ``"fastai"``, ``"monai"`` at the
            scale, ``"fir"``); ``None`` (default) for none.
    """

    KIND: ClassVar[str] = "subpixel"

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        scale: IntOrAxes = 2,
        kernel_size: IntOrAxes = 3,
        residual: Residual | None = None,
        use_bias: bool = True,
        *,
        spatial_dims: int | None = None,
        groups: int = 1,
        dilation: IntOrAxes = 1,
        blur: Blur | str | None = None,
    ) -> None:
        self._set_common(
            in_channels, out_channels, scale, kernel_size, residual, use_bias, spatial_dims, groups, dilation, blur=blur
        )

    @property
    def conv_channels(self) -> int:
        """``C_out * prod(scale)``: the convolution's output channels, in CRD order."""
        return self.out_channels * math.prod(self.scale)

    def _conv_input_size(self, size: Axes) -> Axes:
        return size

    def _axis_coverage(self, input_length: int, axis: int) -> list[int]:
        per_input = conv_geometry.same_coverage(input_length, self.kernel_size[axis], self.dilation[axis])
        return [per_input[position // self.scale[axis]] for position in range(input_length * self.scale[axis])]

    def _note(self, size: Axes) -> str:
        names = axis_names(self.spatial_dims)
        idle = [names[a] for a in range(self.spatial_dims) if size[a] == 1 and self.kernel_size[a] > 1]
        if not idle:
            return ""
        return (
            f"note: along {' and '.join(idle)} a 1-pixel input reaches only the kernel's centre tap (the others "
            f"read zero padding and never learn); kernel_size 1 there is the same layer with fewer parameters"
        )
