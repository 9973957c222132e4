"""What the two convolution kinds (:class:`~upsample.SubpixelSpec`, :class:`~upsample.ResizeSpec`) share: a
stride-1 "same" convolution after or before a reshaping step, with the protocol of :class:`~upsample.UpsampleSpec`:
fields, validation, the convolution's geometry, cost and JSON.

Both convolutions pad ``(k - 1) // 2`` rows before and the rest after per axis (``conv_geometry.same_padding``;
with ``dilation``, the rows of the dilated extent ``d * (k - 1) + 1``). The canonical kernel is
``(kh, kw, C_in // groups, C_conv)`` as a cross-correlation (HWIO, torch's grouping); residual modes are those of
``UpsampleSpec`` (docs/conventions.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from upsample import conv_geometry, geometry, limits
from upsample.arguments import Axes, IntOrAxes, as_axes, as_groups, as_int, spatial_rank
from upsample.blur import Blur, blur_of
from upsample.coverage_report import CoverageReport, blurred, outer
from upsample.messages import shown
from upsample.spec import SPEC_FORMAT_VERSION, Residual
from upsample.spec_kinds import OPTIONAL_KEYS, ParamCount, checked_residual, optional_fields

if TYPE_CHECKING:
    import numpy as np

    from upsample.weights import Weights


@dataclasses.dataclass(frozen=True, init=False)
class ConvKind:
    """What both kinds share: fields, validation, the "same" convolution's geometry, cost, JSON."""

    KIND: ClassVar[str]
    in_channels: int
    out_channels: int
    scale: Axes
    kernel_size: Axes
    residual: Residual | None
    use_bias: bool
    spatial_dims: int
    groups: int
    dilation: Axes
    blur: Blur | None

    def _set_common(
        self,
        in_channels: int,
        out_channels: int | None,
        scale: Any,
        kernel_size: Any,
        residual: Residual | None,
        use_bias: bool,
        spatial_dims: int | None,
        groups: int,
        dilation: IntOrAxes,
        size: IntOrAxes | None = None,
        blur: Blur | str | None = None,
    ) -> None:
        set_field = object.__setattr__.__get__(self)
        set_field("in_channels", as_int("in_channels", in_channels, 1))
        set_field("out_channels", self.in_channels if out_channels is None else as_int("out_channels", out_channels, 1))
        per_axis = {"scale": scale, "size": size, "kernel_size": kernel_size, "dilation": dilation}
        rank = spatial_rank(spatial_dims, per_axis)
        set_field("spatial_dims", rank)
        set_field("scale", self._scale_axes(scale, size, rank))
        set_field("kernel_size", self._kernel_axes(kernel_size, rank))
        set_field("dilation", as_axes("dilation", dilation, rank, 1))
        set_field("groups", as_groups(groups, self.in_channels, self.out_channels))
        set_field("residual", checked_residual(residual, self.in_channels, self.out_channels))
        set_field("blur", blur_of(blur, rank, self._blur_factor()))
        if not isinstance(use_bias, bool) and type(use_bias).__name__ != "bool_":
            raise TypeError(f"use_bias must be a bool, got {shown(use_bias)} ({type(use_bias).__name__})")
        set_field("use_bias", bool(use_bias))

    def _blur_factor(self) -> Axes | None:
        """The integer factor per axis that ``blur="monai"`` averages over (``None``: the spec has none)."""
        return self.scale  # type: ignore[no-any-return]

    def _scale_axes(self, scale: Any, size: Any, rank: int) -> Any:
        """``scale`` checked, one per axis (a resize also reads ``size``)."""
        return as_axes("scale", scale, rank, 1)

    def _kernel_axes(self, kernel_size: Any, rank: int) -> Any:
        """``kernel_size`` checked, one per axis (a resize alone has none)."""
        return as_axes("kernel_size", kernel_size, rank, 1)

    # --- geometry ------------------------------------------------------------------------------

    @property
    def conv_channels(self) -> int:
        """Output channels of the convolution (``C_conv``)."""
        return self.out_channels

    @property
    def extent(self) -> Axes:
        """The pixels the convolution's kernel spans per axis, ``dilation * (kernel_size - 1) + 1``."""
        return tuple(geometry.extent(k, d) for k, d in zip(self.kernel_size, self.dilation, strict=True))

    @property
    def padding(self) -> tuple[tuple[int, int], ...]:
        """The convolution's zero rows per axis, ``((top, bottom), (left, right))`` in 2-D
        (``conv_geometry.same_padding`` of the extent)."""
        return tuple(conv_geometry.same_padding(k) for k in self.extent)

    def _size(self, input_size: IntOrAxes) -> Axes:
        return as_axes("input_size", input_size, self.spatial_dims, 1)

    def output_size(self, input_size: IntOrAxes = 1) -> Axes:
        """The output's spatial size (``(H, W)`` in 2-D) for an input of ``input_size``: ``input * scale``."""
        size = self._size(input_size)
        return tuple(length * scale for length, scale in zip(size, self.scale, strict=True))

    def _axis_coverage(self, input_length: int, axis: int) -> list[int]:
        raise NotImplementedError

    def _axes_coverage(self, size: Axes) -> tuple[list[int], ...]:
        """Per-axis coverage, each list ``O(output length)`` and bounded by ``limits.MAX_AXIS``."""
        limits.check_output(self, size)
        return tuple(self._axis_coverage(size[a], a) for a in range(self.spatial_dims))

    def coverage(self, input_size: IntOrAxes = 1) -> np.ndarray:
        """Int array of the output's spatial shape: how many kernel taps read the (resized) input, not padding,
        per output pixel."""
        size = self._size(input_size)
        limits.check_map(self, size)
        return outer(blurred(self.blur, self._axes_coverage(size)))

    @property
    def blur_alone(self) -> bool:
        """Whether the layer is a blur and nothing else (a resize alone by 1 with a blur: a stage that smooths)."""
        return False

    def _note(self, size: Axes) -> str:
        raise NotImplementedError

    def diagnose(self, input_size: IntOrAxes = 1) -> CoverageReport:
        """No dead pixels and even interior coverage by construction; the report's ``suggestion`` says what
        a 1-pixel input wastes, and a scale of 1 is reported as not upsampling."""
        size = self._size(input_size)
        axes = blurred(self.blur, self._axes_coverage(size))
        live = math.prod(sum(1 for count in axis if count) for axis in axes)
        out = tuple(len(axis) for axis in axes)
        return CoverageReport(
            input_size=size,
            output_size=out,
            dead=math.prod(out) - live,
            live=live,
            uneven_axes=(),
            not_upsampling=out == size and not self.blur_alone,
            suggestion=self._note(size),
            blurred=self.blur is not None,
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Canonical array shapes (``None``: absent): kernel ``(*k, C_in // groups, C_conv)``, bias, projection skip."""
        return {
            "kernel": (*self.kernel_size, self.in_channels // self.groups, self.conv_channels),
            "bias": (self.conv_channels,) if self.use_bias else None,
            "skip": (self.in_channels, self.out_channels) if self.residual == "projection" else None,
        }

    # --- size and cost -------------------------------------------------------------------------

    @property
    def num_params(self) -> ParamCount:
        """Number of trainable values: kernel, bias and projection skip."""
        return ParamCount(sum(math.prod(shape) for shape in self.weight_shapes().values() if shape is not None))

    def _conv_input_size(self, size: Axes) -> Axes:
        raise NotImplementedError

    def flops(self, input_size: IntOrAxes = 1) -> int:
        """Floating-point operations per sample of the convolution, bias and residual (a multiply-add is two)."""
        size = self._size(input_size)
        outputs = math.prod(self.output_size(size))
        conv_pixels = math.prod(self._conv_input_size(size))
        total = 2 * conv_pixels * math.prod(self.kernel_size) * self.in_channels * self.conv_channels // self.groups
        if self.use_bias:
            total += conv_pixels * self.conv_channels
        if self.residual == "projection":
            total += 2 * math.prod(size) * self.in_channels * self.out_channels
        if self.residual is not None:
            total += outputs * self.out_channels
        if self.blur is not None:
            total += self.blur.flops(outputs, self.out_channels)
        return total

    # --- serialisation -------------------------------------------------------------------------

    _OPTIONAL_EXTRA: ClassVar[tuple[str, ...]] = ()
    """Keys of :meth:`_extra_fields` written only where they differ from their defaults."""

    def _extra_fields(self) -> dict[str, Any]:
        return {}

    def _scale_field(self) -> Any:
        return list(self.scale)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the canonical form, with a format version and the kind (``spatial_dims``,
        ``groups`` and ``dilation`` only where not 2, 1 and 1, so a spec without them writes what it always wrote)."""
        data = {
            "version": SPEC_FORMAT_VERSION,
            "kind": self.KIND,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "scale": self._scale_field(),
            "kernel_size": None if self.kernel_size is None else list(self.kernel_size),
            **self._extra_fields(),
            "residual": self.residual,
            "use_bias": self.use_bias,
        }
        return {**data, **optional_fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; rejects unknown keys, versions and other kinds."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a spec dict must be a mapping, got {type(data).__name__}")
        if data.get("kind") != cls.KIND:
            raise ValueError(
                f"spec kind must be {cls.KIND!r} for a {cls.__name__}, got {shown(data.get('kind'))}; "
                f"use upsample.load_spec"
            )
        if data.get("version") != SPEC_FORMAT_VERSION:
            raise ValueError(
                f"spec format version {shown(data.get('version'))} is not supported; this upsample reads version "
                f"{SPEC_FORMAT_VERSION}"
            )
        keys = set(cls(1).to_dict())  # type: ignore[call-arg]  # every kind takes in_channels first
        unknown = sorted(set(data) - keys - set(OPTIONAL_KEYS) - set(cls._OPTIONAL_EXTRA))
        if unknown:
            raise ValueError(f"unknown spec keys {shown(unknown)}; a {cls.KIND} spec dict has exactly {sorted(keys)}")
        missing = sorted(keys - set(data))
        if missing:
            raise ValueError(f"spec dict is missing keys {missing}")
        arguments = {key: value for key, value in data.items() if key not in ("version", "kind")}
        for key in ("scale", "size", "kernel_size", "dilation"):
            if isinstance(arguments.get(key), list):
                arguments[key] = tuple(arguments[key])
        return cls(**arguments)

    def to_json(self) -> str:
        """The canonical form as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"spec JSON is not valid JSON: {error}") from None
        return cls.from_dict(data)

    # --- building ------------------------------------------------------------------------------

    def build(self, backend: str, *, weights: Weights | None = None, **kwargs: Any) -> Any:
        """The native layer for ``backend`` (see :func:`upsample.backends.available`)."""
        from upsample import backends

        return backends.build(self, backend, weights=weights, **kwargs)  # type: ignore[arg-type]
