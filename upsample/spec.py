"""``UpsampleSpec``: one backend-neutral description of an upsampling layer.

A spec is checked when it is made and normalised to explicit per-axis crops (docs/conventions.md), so torch
style (``padding``/``output_padding``), Keras style (``"same"``/``"valid"``) and explicit crops all
land on one canonical form, and two specs that mean the same layer compare equal.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from upsample import geometry, limits
from upsample.arguments import IntOrPair as IntOrPair  # the names every kind imports from here
from upsample.arguments import Pair as Pair
from upsample.arguments import as_int, as_pair, sequence_items
from upsample.coverage_report import CoverageReport as CoverageReport
from upsample.messages import shown
from upsample.spec_kinds import SPEC_KINDS as SPEC_KINDS  # the names every kind imports from here
from upsample.spec_kinds import ParamCount
from upsample.spec_kinds import load_spec as load_spec
from upsample.spec_kinds import parse_json as parse_json
from upsample.spec_kinds import require_spec as require_spec

if TYPE_CHECKING:
    import numpy as np

    from upsample.weights import Weights

Crops = tuple[tuple[int, int], tuple[int, int]]
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]
Residual = Literal["nearest", "projection"]

RESIDUAL_MODES = ("nearest", "projection")
PADDING_MODES = ("same", "valid")
SPEC_FORMAT_VERSION = 1
KIND = "transposed"
_DICT_KEYS = (
    "version", "kind", "in_channels", "out_channels", "kernel_size", "stride", "crops", "residual", "use_bias"
)  # fmt: skip


def _is_explicit_crops(padding: Any) -> bool:
    items = sequence_items(padding)
    return items is not None and len(items) == 2 and all(sequence_items(axis) is not None for axis in items)


def _crops(padding: Padding, output_padding: IntOrPair | None, kernel: Pair, stride: Pair) -> Crops:
    """Normalise every accepted padding form to per-axis crops (docs/conventions.md has the mapping)."""
    op = None if output_padding is None else as_pair("output_padding", output_padding, 0)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in PADDING_MODES:
            raise ValueError(
                f"padding must be an int, an (h, w) pair, 'same', 'valid' or crops ((top, bottom), "
                f"(left, right)), got {shown(padding)}"
            )
        return tuple(  # type: ignore[return-value]
            geometry.crop_from_keras(mode, kernel[a], stride[a], None if op is None else op[a]) for a in (0, 1)
        )
    extra = op or (0, 0)
    if _is_explicit_crops(padding):
        items = sequence_items(padding)
        assert items is not None
        axes = tuple(as_pair(f"padding[{a}] (crop)", items[a], None) for a in (0, 1))
        return tuple((axes[a][0], axes[a][1] - extra[a]) for a in (0, 1))  # type: ignore[return-value]
    torch_padding = as_pair("padding", padding, 0)
    return tuple(geometry.crop_from_torch(torch_padding[a], extra[a]) for a in (0, 1))  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True, init=False)
class UpsampleSpec:
    """A transposed convolution (optionally with a residual skip), checked and normalised.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (default: ``in_channels``).
        kernel_size: int or ``(kh, kw)``.
        stride: int or ``(sh, sw)``.
        padding: torch-style int or ``(h, w)`` pair, Keras-style ``"same"``/``"valid"``, or explicit
            crops ``((top, bottom), (left, right))`` taken off the full output (negative adds rows);
            ``None`` (the default) means 0.
        output_padding: extra rows added at the bottom/right, as in torch and Keras. ``None`` means
            the padding form's own default (for ``"same"``/``"valid"`` this differs from 0, as in Keras).
        residual: ``None``, ``"nearest"`` (identity skip) or ``"projection"`` (learned 1x1 map).
        use_bias: whether the layer adds a bias.
        crops: the stored form itself, instead of ``padding``/``output_padding`` (so that
            ``dataclasses.replace`` and :meth:`replace` work).

    The stored form is ``kernel_size``, ``stride`` and ``crops``; ``padding`` and ``output_padding``
    are only construction arguments.
    """

    in_channels: int
    out_channels: int
    kernel_size: Pair
    stride: Pair
    crops: Crops
    residual: Residual | None
    use_bias: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: IntOrPair = 1,
        stride: IntOrPair = 1,
        padding: Padding | None = None,
        output_padding: IntOrPair | None = None,
        residual: Residual | None = None,
        use_bias: bool = True,
        *,
        crops: Padding | None = None,
    ) -> None:
        set_field = object.__setattr__.__get__(self)
        set_field("in_channels", as_int("in_channels", in_channels, 1))
        out = self.in_channels if out_channels is None else as_int("out_channels", out_channels, 1)
        set_field("out_channels", out)
        set_field("kernel_size", as_pair("kernel_size", kernel_size, 1))
        set_field("stride", as_pair("stride", stride, 1))
        if crops is not None:
            if not _is_explicit_crops(crops):
                raise ValueError(f"crops must be ((top, bottom), (left, right)), got {shown(crops)}")
            if padding is not None or output_padding is not None:
                raise ValueError("give crops or padding/output_padding, not both (replace() takes either)")
            padding = crops
        set_field("crops", _crops(0 if padding is None else padding, output_padding, self.kernel_size, self.stride))
        if residual is not None and (not isinstance(residual, str) or residual not in RESIDUAL_MODES):
            raise ValueError(f"residual must be None, 'nearest' or 'projection', got {shown(residual)}")
        if residual == "nearest" and self.in_channels != self.out_channels:
            raise ValueError(
                f"residual='nearest' is an identity skip and needs in_channels == out_channels, got "
                f"in_channels={self.in_channels}, out_channels={self.out_channels}; use "
                f"residual='projection' for a learned 1x1 map between channel counts"
            )
        set_field("residual", residual)
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
        return f"UpsampleSpec(kernel_size={self.kernel_size}, stride={self.stride}, crops={self.crops})"

    # --- geometry ------------------------------------------------------------------------------

    def output_size(self, input_size: IntOrPair = 1) -> Pair:
        """``(H, W)`` of the output for an input of ``input_size`` (int or ``(h, w)``)."""
        size = as_pair("input_size", input_size, 1)
        out = tuple(geometry.output_length(size[a], self.kernel_size[a], self.stride[a], self.crops[a]) for a in (0, 1))
        if min(out) <= 0:
            raise ValueError(
                f"output size would be {out} for input size {size}: kernel_size={self.kernel_size}, "
                f"stride={self.stride} give a full output of {self.full_size(size)} and crops="
                f"{self.crops} remove more than that; use smaller crops or a larger kernel"
            )
        return out  # type: ignore[return-value]

    def full_size(self, input_size: IntOrPair = 1) -> Pair:
        """``(H, W)`` of the uncropped transposed-convolution output."""
        size = as_pair("input_size", input_size, 1)
        return tuple(geometry.full_length(size[a], self.kernel_size[a], self.stride[a]) for a in (0, 1))  # type: ignore[return-value]

    def coverage(self, input_size: IntOrPair = 1) -> np.ndarray:
        """Int array ``(H, W)``: how many (input pixel, kernel tap) pairs reach each output pixel."""
        import numpy as np

        size = as_pair("input_size", input_size, 1)
        limits.check_map(self, size)
        rows, cols = self._axis_coverage(size)
        return np.outer(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))

    def _axis_coverage(self, size: Pair) -> tuple[list[int], list[int]]:
        """Per-axis coverage, each list ``O(output length)`` and bounded by ``limits.MAX_AXIS``."""
        limits.check_output(self, size)
        rows, cols = (geometry.coverage(size[a], self.kernel_size[a], self.stride[a], self.crops[a]) for a in (0, 1))
        return rows, cols

    def diagnose(self, input_size: IntOrPair = 1) -> CoverageReport:
        """Dead pixels, uneven interior overlap (checkerboard risk), and strides or sizes that do no
        upsampling, for ``input_size``; work and memory ``O(H + W)``."""
        size = as_pair("input_size", input_size, 1)
        axes = self._axis_coverage(size)
        uneven = []
        for a, axis in enumerate(axes):
            positions = geometry.interior(size[a], self.kernel_size[a], self.stride[a], self.crops[a])
            inner = {axis[p] for p in positions if axis[p] > 0}
            uneven.append(len(inner) > 1)
        live_rows, live_cols = (sum(1 for count in axis if count) for axis in axes)
        out = (len(axes[0]), len(axes[1]))
        idle = tuple(name for a, name in enumerate(("height", "width")) if size[a] == 1 and self.stride[a] > 1)
        not_upsampling = out[0] <= size[0] and out[1] <= size[1]
        suggestion = ""
        if idle or not_upsampling:
            meant = (size[0] * self.stride[0], size[1] * self.stride[1])
            if meant[0] > size[0] or meant[1] > size[1]:
                suggestion = self._suggest(size, meant)
        return CoverageReport(
            input_size=size,
            output_size=out,
            dead=out[0] * out[1] - live_rows * live_cols,
            live=live_rows * live_cols,
            uneven_axes=tuple(name for name, flag in zip(("height", "width"), uneven, strict=True) if flag),
            idle_strides=idle,
            not_upsampling=not_upsampling,
            suggestion=suggestion,
        )

    def _suggest(self, size: Pair, meant: Pair) -> str:
        """What a user who expected ``input * stride`` pixels probably meant, as a ``for_size`` call."""
        target = meant[0] if meant[0] == meant[1] else meant
        source = "" if size == (1, 1) else f", input_size={size[0] if size[0] == size[1] else size}"
        try:
            better = UpsampleSpec.for_size(self.in_channels, meant, out_channels=self.out_channels, input_size=size)
        except ValueError:
            return ""
        return (
            f"for {size[0]}x{size[1]} -> {meant[0]}x{meant[1]} use UpsampleSpec.for_size({self.in_channels}, "
            f"{target}{source}) (kernel_size={better.kernel_size}, stride={better.stride})"
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Canonical array shapes (``None``: absent): kernel ``(kh, kw, C_in, C_out)``, bias, projection skip."""
        kh, kw = self.kernel_size
        return {
            "kernel": (kh, kw, self.in_channels, self.out_channels),
            "bias": (self.out_channels,) if self.use_bias else None,
            "skip": (self.in_channels, self.out_channels) if self.residual == "projection" else None,
        }

    # --- size and cost -------------------------------------------------------------------------

    @property
    def num_params(self) -> ParamCount:
        """Number of trainable values: kernel, bias and projection skip."""
        kh, kw = self.kernel_size
        count = kh * kw * self.in_channels * self.out_channels
        if self.use_bias:
            count += self.out_channels
        if self.residual == "projection":
            count += self.in_channels * self.out_channels
        return ParamCount(count)

    def flops(self, input_size: IntOrPair = 1) -> int:
        """Floating-point operations per sample (a multiply-add counts as two)."""
        size = as_pair("input_size", input_size, 1)
        h, w = self.output_size(size)
        pixels = size[0] * size[1]
        kh, kw = self.kernel_size
        total = 2 * pixels * self.in_channels * kh * kw * self.out_channels
        if self.use_bias:
            total += h * w * self.out_channels
        if self.residual == "projection":
            total += 2 * pixels * self.in_channels * self.out_channels
        if self.residual is not None:
            total += h * w * self.out_channels
        return total

    # --- choosing parameters -------------------------------------------------------------------

    @classmethod
    def for_size(
        cls,
        in_channels: int,
        size: IntOrPair,
        *,
        out_channels: int | None = None,
        input_size: IntOrPair = 1,
        kernel_size: IntOrPair | None = None,
        residual: Residual | None = None,
    ) -> UpsampleSpec:
        """A spec that maps ``input_size`` to exactly ``size`` with every pixel live and even overlap.

        From 1x1 this is the dense projection (kernel = size, stride 1). From a larger input with an
        integer scale ``f`` it is kernel ``2f``, stride ``f`` and the crops that hit the size (as
        DCGAN's k4 s2 p1 for 4 -> 8). Raises ``ValueError`` when one stage cannot do it.
        """
        target = as_pair("size", size, 1)
        source = as_pair("input_size", input_size, 1)
        chosen_kernel = None if kernel_size is None else as_pair("kernel_size", kernel_size, 1)
        kernels, strides, crops = [], [], []
        for a, axis in enumerate(("height", "width")):
            k, s, crop = _plan_axis(axis, source[a], target[a], None if chosen_kernel is None else chosen_kernel[a])
            kernels.append(k)
            strides.append(s)
            crops.append(crop)
        return cls(
            in_channels,
            out_channels,
            kernel_size=tuple(kernels),  # type: ignore[arg-type]
            stride=tuple(strides),  # type: ignore[arg-type]
            padding=tuple(crops),  # type: ignore[arg-type]
            residual=residual,
        )

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the canonical form, with a format version."""
        return {
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpsampleSpec:
        """Inverse of :meth:`to_dict`; rejects unknown keys and versions."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a spec dict must be a mapping, got {type(data).__name__}")
        unknown = sorted(map(str, set(data) - set(_DICT_KEYS)))
        if unknown:
            raise ValueError(f"unknown spec keys {shown(unknown)}; a spec dict has exactly {list(_DICT_KEYS)}")
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
        crops = data["crops"]
        if not _is_explicit_crops(crops):
            raise ValueError(f"spec 'crops' must be [[top, bottom], [left, right]], got {shown(crops)}")
        return cls(
            data["in_channels"],
            data["out_channels"],
            kernel_size=data["kernel_size"],
            stride=data["stride"],
            residual=data["residual"],
            use_bias=data["use_bias"],
            crops=crops,
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


def _plan_axis(axis: str, source: int, target: int, kernel: int | None) -> tuple[int, int, tuple[int, int]]:
    """Kernel, stride and crop for one axis of :meth:`UpsampleSpec.for_size`."""
    if source == 1:
        k = target if kernel is None else kernel
        if k < target:
            raise ValueError(
                f"cannot reach {target} pixels along {axis} from a 1x1 input with kernel {k} in one stage: "
                f"a 1x1 input reaches at most kernel pixels without dead ones; use kernel_size >= {target} "
                f"(the default picks {target}), or stack stages (e.g. 1 -> {k}, then integer scales)"
            )
        excess = k - target
        return k, 1, (excess // 2, excess - excess // 2)
    if target % source:
        raise ValueError(
            f"cannot go from {source} to {target} pixels along {axis} in one stage: one transposed "
            f"convolution with even overlap needs an integer scale; pick a size that is a multiple of {source}"
        )
    scale = target // source
    k = 2 * scale if kernel is None else kernel
    if k < scale or k % scale:
        raise ValueError(
            f"kernel {k} along {axis} does not give even overlap at scale {scale}: the kernel must be a "
            f"multiple of the stride {scale} (e.g. {2 * scale})"
        )
    excess = k - scale
    return k, scale, (excess // 2, excess - excess // 2)
