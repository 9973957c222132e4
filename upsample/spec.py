"""``UpsampleSpec``: one backend-neutral description of an upsampling layer.

A spec is checked when it is made and normalised to explicit per-axis crops (docs/conventions.md), so torch
style (``padding``/``output_padding``), Keras style (``"same"``/``"valid"``) and explicit crops all
land on one canonical form, and two specs that mean the same layer compare equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from upsample import geometry, limits
from upsample.arguments import Axes, IntOrAxes, as_axes, as_groups, as_int, axis_names, size_text, spatial_rank
from upsample.arguments import IntOrPair as IntOrPair  # the names every kind imports from here
from upsample.arguments import Pair as Pair
from upsample.blur import Blur, blur_of
from upsample.coverage_report import CoverageReport as CoverageReport
from upsample.coverage_report import blurred, holes, outer, uneven_interior
from upsample.crops import Crops as Crops  # the names backends import from here
from upsample.crops import Padding, crops_from_padding, crops_words, is_explicit_crops
from upsample.messages import shown
from upsample.spec_kinds import OPTIONAL_KEYS, ParamCount, checked_residual, optional_fields
from upsample.spec_kinds import RESIDUAL_MODES as RESIDUAL_MODES  # the names every kind imports from here
from upsample.spec_kinds import SPEC_KINDS as SPEC_KINDS  # the names every kind imports from here
from upsample.spec_kinds import Residual as Residual
from upsample.spec_kinds import load_spec as load_spec
from upsample.spec_kinds import parse_json as parse_json
from upsample.spec_kinds import require_spec as require_spec

if TYPE_CHECKING:
    import numpy as np

    from upsample.weights import Weights

SPEC_FORMAT_VERSION = 1
KIND = "transposed"
_DICT_KEYS = (
    "version", "kind", "in_channels", "out_channels", "kernel_size", "stride", "crops", "residual", "use_bias"
)  # fmt: skip


@dataclasses.dataclass(frozen=True, init=False)
class UpsampleSpec:
    """A transposed convolution (optionally with a residual skip), checked and normalised.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (default: ``in_channels``).
        kernel_size: int or one int per spatial axis (``(kh, kw)`` in 2-D).
        stride: int or one int per spatial axis.
        padding: torch-style int or one int per axis, Keras-style ``"same"``/``"valid"``, or explicit
            crops ``((top, bottom), (left, right))`` (one ``(begin, end)`` per axis) taken off the full output
            (negative adds rows); ``None`` (the default) means 0.
        output_padding: extra rows added at the end of each axis, as in torch and Keras. ``None`` means
            the padding form's own default (for ``"same"``/``"valid"`` this differs from 0, as in Keras).
        residual: ``None``, ``"nearest"`` (identity skip) or ``"projection"`` (learned 1x1 map).
        use_bias: whether the layer adds a bias.
        crops: the stored form itself, instead of ``padding``/``output_padding`` (so that
            ``dataclasses.replace`` and :meth:`replace` work).
        spatial_dims: 1 (sequences), 2 (images) or 3 (volumes); default: the length of the per-axis
            tuples given, else 2.
        groups: input and output channels split into this many groups, each group's inputs reaching only its
            own outputs (torch's and ONNX's ``groups``; ``groups == in_channels`` is depthwise).
        dilation: int or one int per axis: tap ``t`` lands ``t * dilation`` pixels on, so the kernel spans
            ``dilation * (kernel_size - 1) + 1`` pixels (its *extent*, which every padding form uses).
        blur: a fixed low-pass filter after the layer (:class:`~upsample.Blur`, or ``"fastai"``, ``"monai"`` at the
            stride, ``"fir"``): it evens out uneven overlap; ``None`` (default) for none.

    The stored form is ``kernel_size``, ``stride`` and ``crops``; ``padding`` and ``output_padding``
    are only construction arguments.
    """

    KIND: ClassVar[str] = KIND
    in_channels: int
    out_channels: int
    kernel_size: Axes
    stride: Axes
    crops: Crops
    residual: Residual | None
    use_bias: bool
    spatial_dims: int
    groups: int
    dilation: Axes
    blur: Blur | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: IntOrAxes = 1,
        stride: IntOrAxes = 1,
        padding: Padding | None = None,
        output_padding: IntOrAxes | None = None,
        residual: Residual | None = None,
        use_bias: bool = True,
        *,
        crops: Padding | None = None,
        spatial_dims: int | None = None,
        groups: int = 1,
        dilation: IntOrAxes = 1,
        blur: Blur | str | None = None,
    ) -> None:
        set_field = object.__setattr__.__get__(self)
        set_field("in_channels", as_int("in_channels", in_channels, 1))
        out = self.in_channels if out_channels is None else as_int("out_channels", out_channels, 1)
        set_field("out_channels", out)
        given: dict[str, Any] = {
            "kernel_size": kernel_size, "stride": stride, "output_padding": output_padding, "dilation": dilation
        }  # fmt: skip
        for name, value in (("padding", padding), ("crops", crops)):
            if not isinstance(value, str) and (is_explicit_crops(value) or name == "padding"):
                given[name] = value
        rank = spatial_rank(spatial_dims, given)
        set_field("spatial_dims", rank)
        set_field("kernel_size", as_axes("kernel_size", kernel_size, rank, 1))
        set_field("stride", as_axes("stride", stride, rank, 1))
        set_field("dilation", as_axes("dilation", dilation, rank, 1))
        set_field("groups", as_groups(groups, self.in_channels, self.out_channels))
        if crops is not None:
            if not is_explicit_crops(crops, rank):
                raise ValueError(f"crops must be {crops_words(rank)}, got {shown(crops)}")
            if padding is not None or output_padding is not None:
                raise ValueError("give crops or padding/output_padding, not both (replace() takes either)")
            padding = crops
        set_field(
            "crops",
            crops_from_padding(0 if padding is None else padding, output_padding, self.extent, self.stride),
        )
        set_field("residual", checked_residual(residual, self.in_channels, self.out_channels))
        set_field("blur", blur_of(blur, rank, self.stride))
        if not isinstance(use_bias, bool) and type(use_bias).__name__ not in ("bool_", "bool"):  # NumPy 1 and 2
            raise TypeError(f"use_bias must be a bool, got {shown(use_bias)} ({type(use_bias).__name__})")
        set_field("use_bias", bool(use_bias))

    def replace(self, **changes: Any) -> UpsampleSpec:
        """A copy with ``changes`` (constructor arguments) applied, like ``dataclasses.replace``; a new
        ``padding``/``output_padding`` replaces the crops."""
        if "padding" in changes or "output_padding" in changes:
            changes.setdefault("crops", None)
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """The layer in one short line, for messages."""
        extra = "" if self.groups == 1 else f", groups={self.groups}"
        extra += "" if set(self.dilation) == {1} else f", dilation={self.dilation}"
        extra += "" if self.blur is None else f", {self.blur.describe()}"
        return f"UpsampleSpec(kernel_size={self.kernel_size}, stride={self.stride}, crops={self.crops}{extra})"

    @property
    def extent(self) -> Axes:
        """The pixels the kernel spans per axis, ``dilation * (kernel_size - 1) + 1`` (``kernel_size`` when not
        dilated): the full output has ``(i - 1) * stride + extent`` pixels."""
        return tuple(geometry.extent(k, d) for k, d in zip(self.kernel_size, self.dilation, strict=True))

    # --- geometry ------------------------------------------------------------------------------

    def _size(self, input_size: IntOrAxes) -> Axes:
        return as_axes("input_size", input_size, self.spatial_dims, 1)

    def output_size(self, input_size: IntOrAxes = 1) -> Axes:
        """The output's spatial size (``(H, W)`` in 2-D) for an input of ``input_size`` (int or one per axis)."""
        size = self._size(input_size)
        out = tuple(
            geometry.output_length(size[a], self.extent[a], self.stride[a], self.crops[a])
            for a in range(self.spatial_dims)
        )
        if min(out) <= 0:
            raise ValueError(
                f"output size would be {out} for input size {size}: kernel_size={self.kernel_size}, "
                f"stride={self.stride} give a full output of {self.full_size(size)} and crops="
                f"{self.crops} remove more than that; use smaller crops or a larger kernel"
            )
        return out

    def full_size(self, input_size: IntOrAxes = 1) -> Axes:
        """The spatial size of the uncropped transposed-convolution output."""
        size = self._size(input_size)
        return tuple(geometry.full_length(size[a], self.extent[a], self.stride[a]) for a in range(self.spatial_dims))

    def coverage(self, input_size: IntOrAxes = 1) -> np.ndarray:
        """Int array of the output's spatial shape: how many (input pixel, kernel tap) pairs reach each pixel."""
        size = self._size(input_size)
        limits.check_map(self, size)
        return outer(blurred(self.blur, self._axis_coverage(size)))

    def _axis_coverage(self, size: Axes) -> tuple[list[int], ...]:
        """Per-axis coverage before any blur, each list ``O(output length)`` and bounded by ``limits.MAX_AXIS``."""
        limits.check_output(self, size)
        return tuple(
            geometry.coverage(size[a], self.kernel_size[a], self.stride[a], self.crops[a], self.dilation[a])
            for a in range(self.spatial_dims)
        )

    def diagnose(self, input_size: IntOrAxes = 1) -> CoverageReport:
        """Dead pixels, uneven interior overlap (checkerboard risk), and strides or sizes that do no
        upsampling, for ``input_size``; work and memory ``O(sum of the output's axes)``."""
        size = self._size(input_size)
        unblurred = self._axis_coverage(size)
        axes = blurred(self.blur, unblurred)
        names = axis_names(self.spatial_dims)
        uneven = [
            uneven_interior(
                self.blur, a, axis, geometry.interior(size[a], self.extent[a], self.stride[a], self.crops[a])
            )
            for a, axis in enumerate(unblurred)
        ]
        live = math.prod(sum(1 for count in axis if count) for axis in axes)
        out = tuple(len(axis) for axis in axes)
        idle = tuple(names[a] for a in range(self.spatial_dims) if size[a] == 1 and self.stride[a] > 1)
        not_upsampling = all(out[a] <= size[a] for a in range(self.spatial_dims))
        suggestion = ""
        if idle or not_upsampling:
            meant = tuple(size[a] * self.stride[a] for a in range(self.spatial_dims))
            if meant != size:
                suggestion = self._suggest(size, meant)
        return CoverageReport(
            input_size=size,
            output_size=out,
            dead=math.prod(out) - live,
            live=live,
            uneven_axes=tuple(name for name, flag in zip(names, uneven, strict=True) if flag),
            dilation_holes=tuple(names[a] for a, axis in enumerate(axes) if self.dilation[a] > 1 and holes(axis)),
            idle_strides=idle,
            not_upsampling=not_upsampling,
            suggestion=suggestion,
            blurred=self.blur is not None,
        )

    def _suggest(self, size: Axes, meant: Axes) -> str:
        """What a user who expected ``input * stride`` pixels probably meant, as a ``for_size`` call."""
        target = meant[0] if len(set(meant)) == 1 else meant
        source = "" if set(size) == {1} else f", input_size={size[0] if len(set(size)) == 1 else size}"
        rank = "" if self.spatial_dims == 2 else f", spatial_dims={self.spatial_dims}"
        try:
            better = UpsampleSpec.for_size(
                self.in_channels, meant, out_channels=self.out_channels, input_size=size, spatial_dims=self.spatial_dims
            )
        except ValueError:
            return ""
        return (
            f"for {size_text(size)} -> {size_text(meant)} use UpsampleSpec.for_size({self.in_channels}, "
            f"{target}{source}{rank}) (kernel_size={better.kernel_size}, stride={better.stride})"
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Canonical array shapes (``None``: absent): kernel ``(*k, C_in, C_out // groups)`` (torch's order),
        bias, projection skip."""
        return {
            "kernel": (*self.kernel_size, self.in_channels, self.out_channels // self.groups),
            "bias": (self.out_channels,) if self.use_bias else None,
            "skip": (self.in_channels, self.out_channels) if self.residual == "projection" else None,
        }

    # --- size and cost -------------------------------------------------------------------------

    @property
    def num_params(self) -> ParamCount:
        """Number of trainable values: kernel, bias and projection skip."""
        return ParamCount(sum(math.prod(shape) for shape in self.weight_shapes().values() if shape is not None))

    def flops(self, input_size: IntOrAxes = 1) -> int:
        """Floating-point operations per sample (a multiply-add counts as two)."""
        size = self._size(input_size)
        outputs = math.prod(self.output_size(size))
        pixels = math.prod(size)
        total = 2 * pixels * self.in_channels * math.prod(self.kernel_size) * self.out_channels // self.groups
        if self.use_bias:
            total += outputs * self.out_channels
        if self.residual == "projection":
            total += 2 * pixels * self.in_channels * self.out_channels
        if self.residual is not None:
            total += outputs * self.out_channels
        if self.blur is not None:
            total += self.blur.flops(outputs, self.out_channels)
        return total

    # --- choosing parameters -------------------------------------------------------------------

    @classmethod
    def for_size(
        cls,
        in_channels: int,
        size: IntOrAxes,
        *,
        out_channels: int | None = None,
        input_size: IntOrAxes = 1,
        kernel_size: IntOrAxes | None = None,
        residual: Residual | None = None,
        spatial_dims: int | None = None,
    ) -> UpsampleSpec:
        """A spec that maps ``input_size`` to exactly ``size`` with every pixel live and even overlap.

        From 1x1 this is the dense projection (kernel = size, stride 1). From a larger input with an
        integer scale ``f`` it is kernel ``2f``, stride ``f`` and the crops that hit the size (as
        DCGAN's k4 s2 p1 for 4 -> 8). Raises ``ValueError`` when one stage cannot do it.
        """
        rank = spatial_rank(spatial_dims, {"size": size, "input_size": input_size, "kernel_size": kernel_size})
        target = as_axes("size", size, rank, 1)
        source = as_axes("input_size", input_size, rank, 1)
        chosen_kernel = None if kernel_size is None else as_axes("kernel_size", kernel_size, rank, 1)
        from upsample.plans import plan_transposed_axis

        planned = [
            plan_transposed_axis(axis, source[a], target[a], None if chosen_kernel is None else chosen_kernel[a], rank)
            for a, axis in enumerate(axis_names(rank))
        ]
        return cls(
            in_channels,
            out_channels,
            kernel_size=tuple(k for k, _, _ in planned),
            stride=tuple(s for _, s, _ in planned),
            padding=tuple(crop for _, _, crop in planned),
            residual=residual,
            spatial_dims=rank,
        )

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the canonical form, with a format version (``spatial_dims``, ``groups`` and
        ``dilation`` only when not 2, 1 and 1, so a spec without them writes what it always wrote)."""
        data = {
            "version": SPEC_FORMAT_VERSION,
            "kind": KIND,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "crops": [list(axis) for axis in self.crops],
            "residual": self.residual,
            "use_bias": self.use_bias,
        }
        return {**data, **optional_fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpsampleSpec:
        """Inverse of :meth:`to_dict`; rejects unknown keys and versions."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a spec dict must be a mapping, got {type(data).__name__}")
        unknown = sorted(map(str, set(data) - set(_DICT_KEYS) - set(OPTIONAL_KEYS)))
        if unknown:
            raise ValueError(
                f"unknown spec keys {shown(unknown)}; a spec dict has exactly {list(_DICT_KEYS)} "
                f"(and {list(OPTIONAL_KEYS)} where not 2-D, grouped or dilated)"
            )
        missing = sorted(set(_DICT_KEYS) - set(data) - {"kind"})  # files written before kinds existed lack it
        if missing:
            raise ValueError(f"spec dict is missing keys {missing}")
        if data["version"] != SPEC_FORMAT_VERSION:
            raise ValueError(
                f"spec format version {shown(data['version'])} is not supported; this upsample reads version "
                f"{SPEC_FORMAT_VERSION}"
            )
        if data.get("kind", KIND) != KIND:
            raise ValueError(f"spec kind must be {KIND!r} for an UpsampleSpec, got {shown(data['kind'])}")
        rank = spatial_rank(data.get("spatial_dims", 2), {})
        crops = data["crops"]
        if not is_explicit_crops(crops, rank):
            raise ValueError(
                f"spec 'crops' must be {crops_words(rank).replace('(', '[').replace(')', ']')}, got {shown(crops)}"
            )
        return cls(
            data["in_channels"],
            data["out_channels"],
            kernel_size=data["kernel_size"],
            stride=data["stride"],
            residual=data["residual"],
            use_bias=data["use_bias"],
            crops=crops,
            spatial_dims=rank,
            groups=data.get("groups", 1),
            dilation=data.get("dilation", 1),
            blur=data.get("blur"),
        )

    def to_json(self) -> str:
        """The canonical form as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UpsampleSpec:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(parse_json(text))

    # --- building ------------------------------------------------------------------------------

    def build(self, backend: str, *, weights: Weights | None = None, **kwargs: Any) -> Any:
        """The native layer for ``backend`` (see :func:`upsample.backends.available`)."""
        from upsample import backends

        return backends.build(self, backend, weights=weights, **kwargs)
