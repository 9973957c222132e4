"""``SubpixelSpec`` and ``ResizeSpec``: the two upsamplers that are a stride-1 "same" convolution plus a
reshaping step, with the protocol of :class:`~upsample.UpsampleSpec`.

- Sub-pixel convolution (Shi et al. 2016): a convolution to ``C_out * r_h * r_w`` channels, then a pixel
  shuffle in canonical CRD order (conv channel ``c * r_h * r_w + i * r_w + j`` becomes output channel
  ``c`` at sub-pixel ``(i, j)``, as torch ``PixelShuffle``).
- Resize-convolution (Odena et al. 2016): a nearest or half-pixel bilinear resize by an integer factor,
  then the convolution.

Both convolutions pad ``(k - 1) // 2`` rows before and the rest after per axis (``geometry.same_padding``),
so the output is ``input * scale``. The canonical kernel is ``(kh, kw, C_in, C_conv)`` as a
cross-correlation (HWIO); residual modes are those of ``UpsampleSpec`` (docs/conventions.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from upsample import geometry, limits
from upsample.arguments import IntOrPair, Pair, as_int, as_pair
from upsample.coverage_report import CoverageReport
from upsample.messages import shown
from upsample.spec import RESIDUAL_MODES, SPEC_FORMAT_VERSION, Residual
from upsample.spec_kinds import ParamCount

if TYPE_CHECKING:
    import numpy as np

    from upsample.weights import Weights

RESIZE_METHODS = ("nearest", "bilinear")
_AXES = ("height", "width")


@dataclasses.dataclass(frozen=True, init=False)
class _ConvKind:
    """What both kinds share: fields, validation, the "same" convolution's geometry, cost, JSON."""

    KIND: ClassVar[str]
    in_channels: int
    out_channels: int
    scale: Pair
    kernel_size: Pair
    residual: Residual | None
    use_bias: bool

    def _set_common(
        self,
        in_channels: int,
        out_channels: int | None,
        scale: IntOrPair,
        kernel_size: IntOrPair,
        residual: Residual | None,
        use_bias: bool,
    ) -> None:
        set_field = object.__setattr__.__get__(self)
        set_field("in_channels", as_int("in_channels", in_channels, 1))
        set_field("out_channels", self.in_channels if out_channels is None else as_int("out_channels", out_channels, 1))
        set_field("scale", as_pair("scale", scale, 1))
        set_field("kernel_size", as_pair("kernel_size", kernel_size, 1))
        if residual is not None and residual not in RESIDUAL_MODES:
            raise ValueError(f"residual must be None, 'nearest' or 'projection', got {shown(residual)}")
        if residual == "nearest" and self.in_channels != self.out_channels:
            raise ValueError(
                f"residual='nearest' is an identity skip and needs in_channels == out_channels, got "
                f"in_channels={self.in_channels}, out_channels={self.out_channels}; use "
                f"residual='projection' for a learned 1x1 map between channel counts"
            )
        set_field("residual", residual)
        if not isinstance(use_bias, bool) and type(use_bias).__name__ != "bool_":
            raise TypeError(f"use_bias must be a bool, got {shown(use_bias)} ({type(use_bias).__name__})")
        set_field("use_bias", bool(use_bias))

    # --- geometry ------------------------------------------------------------------------------

    @property
    def conv_channels(self) -> int:
        """Output channels of the convolution (``C_conv``)."""
        return self.out_channels

    @property
    def padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The convolution's zero rows ``((top, bottom), (left, right))`` (``geometry.same_padding``)."""
        return (geometry.same_padding(self.kernel_size[0]), geometry.same_padding(self.kernel_size[1]))

    def output_size(self, input_size: IntOrPair = 1) -> Pair:
        """``(H, W)`` of the output for an input of ``input_size``: ``input * scale``."""
        size = as_pair("input_size", input_size, 1)
        return (size[0] * self.scale[0], size[1] * self.scale[1])

    def _axis_coverage(self, input_length: int, axis: int) -> list[int]:
        raise NotImplementedError

    def _axes_coverage(self, size: Pair) -> tuple[list[int], list[int]]:
        """Per-axis coverage, each list ``O(output length)`` and bounded by ``limits.MAX_AXIS``."""
        limits.check_output(self, size)
        return self._axis_coverage(size[0], 0), self._axis_coverage(size[1], 1)

    def coverage(self, input_size: IntOrPair = 1) -> np.ndarray:
        """Int array ``(H, W)``: how many kernel taps read the (resized) input, not padding, per output pixel."""
        import numpy as np

        size = as_pair("input_size", input_size, 1)
        limits.check_map(self, size)
        rows, cols = self._axes_coverage(size)
        return np.outer(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))

    def _note(self, size: Pair) -> str:
        raise NotImplementedError

    def diagnose(self, input_size: IntOrPair = 1) -> CoverageReport:
        """No dead pixels and even interior coverage by construction; the report's ``suggestion`` says what
        a 1-pixel input wastes, and a scale of 1 is reported as not upsampling."""
        size = as_pair("input_size", input_size, 1)
        rows, cols = self._axes_coverage(size)
        live = sum(1 for count in rows if count) * sum(1 for count in cols if count)
        return CoverageReport(
            input_size=size,
            output_size=(len(rows), len(cols)),
            dead=len(rows) * len(cols) - live,
            live=live,
            uneven_axes=(),
            not_upsampling=self.scale == (1, 1),
            suggestion=self._note(size),
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Canonical array shapes (``None``: absent): kernel ``(kh, kw, C_in, C_conv)``, bias, projection skip."""
        kh, kw = self.kernel_size
        return {
            "kernel": (kh, kw, self.in_channels, self.conv_channels),
            "bias": (self.conv_channels,) if self.use_bias else None,
            "skip": (self.in_channels, self.out_channels) if self.residual == "projection" else None,
        }

    # --- size and cost -------------------------------------------------------------------------

    @property
    def num_params(self) -> ParamCount:
        """Number of trainable values: kernel, bias and projection skip."""
        return ParamCount(sum(math.prod(shape) for shape in self.weight_shapes().values() if shape is not None))

    def _conv_input_size(self, size: Pair) -> Pair:
        raise NotImplementedError

    def flops(self, input_size: IntOrPair = 1) -> int:
        """Floating-point operations per sample of the convolution, bias and residual (a multiply-add is two)."""
        size = as_pair("input_size", input_size, 1)
        height, width = self.output_size(size)
        conv_h, conv_w = self._conv_input_size(size)
        kh, kw = self.kernel_size
        total = 2 * conv_h * conv_w * kh * kw * self.in_channels * self.conv_channels
        if self.use_bias:
            total += conv_h * conv_w * self.conv_channels
        if self.residual == "projection":
            total += 2 * size[0] * size[1] * self.in_channels * self.out_channels
        if self.residual is not None:
            total += height * width * self.out_channels
        return total

    # --- serialisation -------------------------------------------------------------------------

    def _extra_fields(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the canonical form, with a format version and the kind."""
        return {
            "version": SPEC_FORMAT_VERSION,
            "kind": self.KIND,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "scale": list(self.scale),
            "kernel_size": list(self.kernel_size),
            **self._extra_fields(),
            "residual": self.residual,
            "use_bias": self.use_bias,
        }

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
        unknown = sorted(set(data) - keys)
        if unknown:
            raise ValueError(f"unknown spec keys {shown(unknown)}; a {cls.KIND} spec dict has exactly {sorted(keys)}")
        missing = sorted(keys - set(data))
        if missing:
            raise ValueError(f"spec dict is missing keys {missing}")
        arguments = {key: value for key, value in data.items() if key not in ("version", "kind")}
        for key in ("scale", "kernel_size"):
            if isinstance(arguments[key], list):
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


@dataclasses.dataclass(frozen=True, init=False)
class SubpixelSpec(_ConvKind):
    """Sub-pixel convolution: a stride-1 "same" convolution to ``C_out * r_h * r_w`` channels, then a CRD
    pixel shuffle by ``scale`` (Shi et al. 2016; torch ``nn.Conv2d`` + ``nn.PixelShuffle``).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (default: ``in_channels``).
        scale: the shuffle factor ``r``, an int or ``(r_h, r_w)``.
        kernel_size: int or ``(kh, kw)``; even sizes pad one more row after than before.
        residual: ``None``, ``"nearest"`` (identity skip) or ``"projection"`` (learned 1x1 map).
        use_bias: whether the convolution adds a bias (``(C_conv,)``, one value per sub-pixel channel).
    """

    KIND: ClassVar[str] = "subpixel"

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        scale: IntOrPair = 2,
        kernel_size: IntOrPair = 3,
        residual: Residual | None = None,
        use_bias: bool = True,
    ) -> None:
        self._set_common(in_channels, out_channels, scale, kernel_size, residual, use_bias)

    @property
    def conv_channels(self) -> int:
        """``C_out * r_h * r_w``: the convolution's output channels, in CRD order."""
        return self.out_channels * self.scale[0] * self.scale[1]

    def _conv_input_size(self, size: Pair) -> Pair:
        return size

    def _axis_coverage(self, input_length: int, axis: int) -> list[int]:
        per_input = geometry.same_coverage(input_length, self.kernel_size[axis])
        return [per_input[position // self.scale[axis]] for position in range(input_length * self.scale[axis])]

    def _note(self, size: Pair) -> str:
        idle = [_AXES[a] for a in (0, 1) if size[a] == 1 and self.kernel_size[a] > 1]
        if not idle:
            return ""
        return (
            f"note: along {' and '.join(idle)} a 1-pixel input reaches only the kernel's centre tap (the others "
            f"read zero padding and never learn); kernel_size 1 there is the same layer with fewer parameters"
        )


@dataclasses.dataclass(frozen=True, init=False)
class ResizeSpec(_ConvKind):
    """Resize-convolution: a nearest or half-pixel bilinear resize by the integer ``scale``, then a stride-1
    "same" convolution (Odena et al. 2016; torch ``F.interpolate(align_corners=False)`` + ``nn.Conv2d``).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (default: ``in_channels``).
        scale: the resize factor, an int or ``(r_h, r_w)``.
        method: ``"nearest"`` (repeat) or ``"bilinear"`` (half-pixel centres, edges clamped).
        kernel_size: int or ``(kh, kw)``; even sizes pad one more row after than before.
        residual: ``None``, ``"nearest"`` (identity skip) or ``"projection"`` (learned 1x1 map).
        use_bias: whether the convolution adds a bias.
    """

    KIND: ClassVar[str] = "resize"
    method: str

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        scale: IntOrPair = 2,
        method: str = "nearest",
        kernel_size: IntOrPair = 3,
        residual: Residual | None = None,
        use_bias: bool = True,
    ) -> None:
        self._set_common(in_channels, out_channels, scale, kernel_size, residual, use_bias)
        if method not in RESIZE_METHODS:
            raise ValueError(f"method must be one of {RESIZE_METHODS}, got {shown(method)}")
        object.__setattr__(self, "method", method)

    def _extra_fields(self) -> dict[str, Any]:
        return {"method": self.method}

    def _conv_input_size(self, size: Pair) -> Pair:
        return self.output_size(size)

    def _axis_coverage(self, input_length: int, axis: int) -> list[int]:
        return geometry.same_coverage(input_length * self.scale[axis], self.kernel_size[axis])

    def _note(self, size: Pair) -> str:
        flat = [_AXES[a] for a in (0, 1) if size[a] == 1 and self.scale[a] > 1]
        if not flat:
            return ""
        resized = "a broadcast" if self.method == "bilinear" else "a repeat"
        return (
            f"note: from a 1-pixel input along {' and '.join(flat)} the {self.method} resize is {resized}, so the "
            f"convolution sees a constant image and the output is spatially constant except within the "
            f"kernel's reach of the borders; use a transposed first stage (UpsampleSpec.for_size) to give "
            f"each output pixel its own weights"
        )


CONV_SPEC_TYPES = (SubpixelSpec, ResizeSpec)
"""The spec classes this module defines (backends dispatch on them)."""
