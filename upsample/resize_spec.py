"""``ResizeSpec``: resize-convolution (Odena et al. 2016), a resize as ONNX ``Resize`` defines it (any method and
coordinate convention, :mod:`upsample.interpolation`) by a factor per axis or to a size, then the stride-1 "same"
convolution of :mod:`upsample.conv_kind`; or, with ``kernel_size=None``, the resize alone (no weights: torch
``nn.Upsample``, Keras ``UpSampling2D``, MONAI's ``nontrainable`` mode, a bare ONNX ``Resize``).

A factor is an int or a float, as ONNX's ``scales``: the output has ``floor(input * scale)`` pixels and the
coordinates map with the factor itself. A ``size`` is ONNX's ``sizes``: the output has that many pixels whatever
the input, and the coordinates map with ``size / input``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

from upsample import conv_geometry, limits
from upsample.arguments import Axes, IntOrAxes, as_axes, axis_names, sequence_items, size_text
from upsample.blur import Blur
from upsample.conv_kind import ConvKind
from upsample.interpolation import Interpolation, output_length
from upsample.messages import shown
from upsample.spec import Residual

Scales = tuple[float, ...]
"""One resize factor per spatial axis: an int where the factor is whole, else a float."""
ScaleOrAxes = float | Sequence[float]


def resize_factors(value: Any, rank: int) -> Scales:
    """A factor (the same on every axis) or one per axis (their count checked by ``spatial_rank``) as positive finite
    numbers, whole ones as ints."""
    items = sequence_items(value)
    factors = []
    for a, item in enumerate(items if items is not None else [value] * rank):
        name = "scale" if items is None else f"scale[{a}]"
        if isinstance(item, bool) or type(item).__name__ == "bool_" or not isinstance(item, numbers.Real):
            raise TypeError(f"{name} must be an int or a float, got {shown(item)} ({type(item).__name__})")
        factor = float(item)
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"{name} must be a positive finite number, got {shown(item)}")
        factors.append(int(factor) if factor.is_integer() else factor)
    return tuple(factors)


@dataclasses.dataclass(frozen=True, init=False)
class ResizeSpec(ConvKind):
    """Resize-convolution: a resize as ONNX ``Resize`` defines it, by ``scale`` or to ``size``, then a stride-1
    "same" convolution (Odena et al. 2016; torch ``F.interpolate`` + ``nn.Conv2d``).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (default: ``in_channels``).
        scale: the resize factor, an int or float or one per spatial axis (default 2); the output has
            ``floor(input * scale)`` pixels (ONNX ``scales``, torch ``scale_factor``).
        method: ``"nearest"``, ``"linear"`` or ``"cubic"`` (``"bilinear"``, ``"trilinear"``, ``"bicubic"`` name
            the same).
        kernel_size: int or one per spatial axis; even sizes pad one more row after than before; ``None``: no
            convolution, the resize alone (no weights, ``out_channels == in_channels``, no residual).
        residual: ``None``, ``"nearest"`` (identity skip) or ``"projection"`` (learned 1x1 map); an integer
            ``scale`` only.
        use_bias: whether the convolution adds a bias (default: it does, when there is one).
        size: instead of ``scale``, the output's size, an int or one per spatial axis (ONNX ``sizes``, torch
            ``size``, ``jax.image.resize``'s shape); the coordinates map with ``size / input``.
        spatial_dims: 1, 2 or 3; default: the length of the per-axis tuples given, else 2.
        groups: the convolution's channel groups (torch ``Conv`` ``groups``); divides both channel counts.
        dilation: the convolution's dilation, an int or one per axis (the padding is that of the dilated extent).
        blur: a fixed low-pass filter after the layer (:class:`~upsample.Blur`, or ``"fastai"``, ``"monai"`` at the
            scale, ``"fir"``); ``None`` (default) for none.
        coordinates: ONNX's ``coordinate_transformation_mode``: ``"half_pixel"`` (default; torch
            ``align_corners=False``, TensorFlow 2, JAX), ``"pytorch_half_pixel"``, ``"align_corners"``,
            ``"asymmetric"`` (TF1's default).
        nearest_mode: how ``nearest`` rounds: ``"round_prefer_ceil"`` (default; torch ``nearest-exact``),
            ``"round_prefer_floor"``, ``"floor"`` (torch ``nearest`` with ``asymmetric``), ``"ceil"``.
        cubic_a: Keys' cubic coefficient: ``-0.75`` (default; ONNX, torch), ``-0.5`` (TensorFlow, JAX).
        exclude_outside: ``cubic`` taps outside the input get weight 0 and the rest sum to 1 (JAX), instead of
            reading the edge pixel.

    The defaults resize as this spec always did: nearest repeats each pixel, linear has half-pixel centres with
    edges clamped (docs/resize.md has every framework's call and the settings that reproduce it).
    """

    KIND: ClassVar[str] = "resize"
    _OPTIONAL_EXTRA: ClassVar[tuple[str, ...]] = ("size", "coordinates", "nearest_mode", "cubic_a", "exclude_outside")
    scale: Any  # Scales, or None when the spec resizes to a size (Any: the convolution kinds' code reads it as ints)
    size: Axes | None
    method: str
    coordinates: str
    nearest_mode: str
    cubic_a: float
    exclude_outside: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        scale: ScaleOrAxes | None = None,
        method: str = "nearest",
        kernel_size: IntOrAxes | None = 3,
        residual: Residual | None = None,
        use_bias: bool | None = None,
        *,
        size: IntOrAxes | None = None,
        spatial_dims: int | None = None,
        groups: int = 1,
        dilation: IntOrAxes = 1,
        blur: Blur | str | None = None,
        coordinates: str = "half_pixel",
        nearest_mode: str = "round_prefer_ceil",
        cubic_a: float = -0.75,
        exclude_outside: bool = False,
    ) -> None:
        alone = kernel_size is None
        if alone and use_bias:
            raise ValueError("use_bias=True needs a convolution; kernel_size=None is a resize alone, with no weights")
        bias = not alone if use_bias is None else use_bias
        self._set_common(
            in_channels,
            out_channels,
            scale,
            kernel_size,
            residual,
            bias,
            spatial_dims,
            groups,
            dilation,
            size,
            blur=blur,
        )
        if alone:
            self._check_resize_alone()
        if self.residual is not None and self.integer_scale is None:
            given = f"scale={shown(self.scale)}" if self.size is None else f"size={shown(self.size)}"
            raise ValueError(
                f"residual={self.residual!r} needs an integer scale (the skip repeats each pixel), got {given}"
            )
        interpolation = Interpolation(method, coordinates, nearest_mode, cubic_a, exclude_outside)
        for field in dataclasses.fields(interpolation):
            object.__setattr__(self, field.name, getattr(interpolation, field.name))

    def _check_resize_alone(self) -> None:
        """A resize with no convolution keeps its channels and has no weights to group, dilate or skip with."""
        given = {
            "out_channels": (self.out_channels, self.in_channels),
            "groups": (self.groups, 1),
            "dilation": (self.dilation, (1,) * self.spatial_dims),
            "residual": (self.residual, None),
        }
        for name, (value, needed) in given.items():
            if value != needed:
                raise ValueError(
                    f"{name} must be {needed!r} for a resize alone (kernel_size=None: no convolution), got "
                    f"{shown(value)}"
                )

    def _kernel_axes(self, kernel_size: Any, rank: int) -> Axes | None:
        return None if kernel_size is None else as_axes("kernel_size", kernel_size, rank, 1)

    @property
    def resize_only(self) -> bool:
        """Whether the spec is the resize alone (``kernel_size=None``): no convolution, no weights."""
        return self.kernel_size is None

    def _scale_axes(self, scale: Any, size: Any, rank: int) -> Scales | None:
        object.__setattr__(self, "size", None if size is None else as_axes("size", size, rank, 1))
        if size is None:
            return resize_factors(2 if scale is None else scale, rank)
        if scale is not None:
            raise ValueError(f"give scale or size, not both; got scale={shown(scale)} and size={shown(size)}")
        return None

    @property
    def interpolation(self) -> Interpolation:
        """The resize's ONNX settings as one value (:class:`upsample.interpolation.Interpolation`)."""
        return Interpolation(self.method, self.coordinates, self.nearest_mode, self.cubic_a, self.exclude_outside)

    @property
    def blur_alone(self) -> bool:
        """Whether this is a resize alone by 1 with a blur: the blur as a stage of its own (fastai's after a ReLU)."""
        return self.resize_only and self.blur is not None and set(self.scale or ()) == {1}

    def _blur_factor(self) -> Axes | None:
        return self.integer_scale

    @property
    def integer_scale(self) -> Axes | None:
        """The factors when every one is an int (what the repeat, phase-split and native fast paths take), else
        ``None``."""
        if self.scale is None or not all(isinstance(factor, int) for factor in self.scale):
            return None
        return self.scale  # type: ignore[return-value]

    @property
    def repeats(self) -> bool:
        """Whether the resize repeats every pixel an integer number of times (what the nearest fast paths compute)."""
        return self.integer_scale is not None and self.interpolation.repeats()

    @property
    def axis_scales(self) -> tuple[float | None, ...]:
        """The factor each axis's coordinates map with (:meth:`Interpolation.axis_taps`'s ``scale``): the given
        factor, or ``None`` (``size / input``) for a spec with a ``size``."""
        return (None,) * self.spatial_dims if self.scale is None else self.scale

    def output_size(self, input_size: IntOrAxes = 1) -> Axes:
        """The output's spatial size for an input of ``input_size``: ``size``, or ``floor(input * scale)``."""
        size = self._size(input_size)
        if self.size is not None:
            return self.size
        out = tuple(output_length(n, factor) for n, factor in zip(size, self.axis_scales, strict=True))  # type: ignore[arg-type]
        if min(out) < 1:
            raise ValueError(
                f"scale={shown(self.scale)} resizes an input of {size_text(size)} to {size_text(out)}: every "
                f"axis needs at least 1 output pixel"
            )
        return out

    def _scale_field(self) -> Any:
        return None if self.scale is None else list(self.scale)

    def _extra_fields(self) -> dict[str, Any]:
        defaults = Interpolation()
        fields = {name: getattr(self, name) for name in self._OPTIONAL_EXTRA if name != "size"}
        size = {} if self.size is None else {"size": list(self.size)}
        return {"method": self.method, **size, **{k: v for k, v in fields.items() if v != getattr(defaults, k)}}

    def _conv_input_size(self, size: Axes) -> Axes:
        return self.output_size(size)

    def weight_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """As :meth:`ConvKind.weight_shapes`; every array absent for a resize alone."""
        if self.resize_only:
            return {"kernel": None, "bias": None, "skip": None}
        return super().weight_shapes()

    def flops(self, input_size: IntOrAxes = 1) -> int:
        """As :meth:`ConvKind.flops` (the convolution, bias, residual and blur; a resize alone: its blur's alone)."""
        if not self.resize_only:
            return super().flops(input_size)
        out = math.prod(self.output_size(input_size))
        return 0 if self.blur is None else self.blur.flops(out, self.out_channels)

    def _axes_coverage(self, size: Axes) -> tuple[list[int], ...]:
        limits.check_output(self, size)
        out = self.output_size(size)
        if self.resize_only:  # every output pixel reads the input once
            return tuple([1] * length for length in out)
        return tuple(
            conv_geometry.same_coverage(out[a], self.kernel_size[a], self.dilation[a]) for a in range(self.spatial_dims)
        )

    def _note(self, size: Axes) -> str:
        names = axis_names(self.spatial_dims)
        out = self.output_size(size)
        flat = [names[a] for a in range(self.spatial_dims) if size[a] == 1 and out[a] > 1]
        if not flat:
            return ""
        resized = "a repeat" if self.method == "nearest" else "a broadcast"
        constant = (
            "the output is spatially constant"
            if self.resize_only
            else "the convolution sees a constant image and the output is spatially constant except within the "
            "kernel's reach of the borders"
        )
        return (
            f"note: from a 1-pixel input along {' and '.join(flat)} the {self.method} resize is {resized}, so "
            f"{constant}; use a transposed first stage (UpsampleSpec.for_size) to give each output pixel its own "
            f"weights"
        )
