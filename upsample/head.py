"""``HeadSpec``: an upsampling head of stages of any kind, with normalisation and activation between them.

Frameworks disagree on exactly the defaults a head needs (BatchNorm epsilon 1e-5 / 1e-3,
momentum as the weight of the new batch in torch and of the old value in Keras and Flax, unbiased or
biased running variance, GroupNorm groups and epsilon, exact or tanh GELU, LeakyReLU slope), so a head
states every constant in :class:`Norm` and :class:`Activation`, in one convention:

- ``momentum`` is the weight of the new batch (torch's): ``running = (1 - momentum) * running + momentum * batch``;
- the running variance takes the unbiased batch variance (``* n / (n - 1)``, ``n = B * H * W``: torch's);
  the forward pass normalises with the biased variance (every framework does);
- training-mode BatchNorm needs more than one value per channel (``B * H * W > 1``): every build raises
  ``ValueError`` otherwise (torch refuses; Keras and Flax would silently return zeros).

Each stage is followed by norm then activation, except the last, which gets ``final_activation`` only
(DCGAN: ``ConvTranspose -> BatchNorm -> ReLU`` stages, ``Tanh`` at the end).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from upsample.arguments import Axes, IntOrAxes, as_axes, size_text
from upsample.coverage_report import CoverageReport
from upsample.messages import shown
from upsample.norm_and_activation import ACTIVATION_ALIASES as ACTIVATION_ALIASES
from upsample.norm_and_activation import ACTIVATION_KINDS as ACTIVATION_KINDS
from upsample.norm_and_activation import NORM_KINDS as NORM_KINDS
from upsample.norm_and_activation import Activation as Activation
from upsample.norm_and_activation import Norm as Norm
from upsample.norm_and_activation import as_activation as as_activation
from upsample.norm_and_activation import as_norm as as_norm
from upsample.spec import SPEC_FORMAT_VERSION, load_spec, require_spec
from upsample.spec_kinds import ParamCount

KIND = "head"
OLD_KINDS = ("stack",)
"""Kinds a head's JSON was written with before heads were called heads (still read)."""
NORM_ARRAYS = ("scale", "offset", "running_mean", "running_var")
"""A norm's arrays, each ``(C,)``; GroupNorm has no running statistics."""
NORM_FLOPS_PER_VALUE = 4
"""Normalisation cost counted per output value: subtract the mean, multiply by the inverse deviation, scale, shift."""


def _name(activation: Activation | None) -> str:
    """An activation as a short label: ``relu``, ``leaky_relu(0.2)``, ``gelu(tanh)``; empty for ``None``."""
    if activation is None:
        return ""
    if activation.kind == "leaky_relu":
        return f"leaky_relu({activation.slope:g})"
    if activation.kind == "elu" and activation.alpha != 1.0:
        return f"elu({activation.alpha:g})"
    return "gelu(tanh)" if activation.kind == "gelu" and activation.approximate else activation.kind


@dataclasses.dataclass(frozen=True)
class HeadReport:
    """What :meth:`HeadSpec.diagnose` found: one report per stage, at that stage's input size."""

    stages: tuple[CoverageReport, ...]

    @property
    def ok(self) -> bool:
        """Every stage is ok."""
        return all(report.ok for report in self.stages)

    @property
    def verdict(self) -> str:
        """One line per stage."""
        return "\n".join(f"stage {i}: {report.verdict}" for i, report in enumerate(self.stages))


@dataclasses.dataclass(frozen=True, init=False)
class HeadSpec:
    """Stages of any spec kind, each but the last followed by ``norm`` then ``activation``; the last by
    ``final_activation``. Validated on construction: channels and sizes chain from ``input_size``, groups
    divide channels; errors name the stage index and the argument.

    Args:
        stages: the stage specs, in order (``UpsampleSpec``, ``SubpixelSpec``, ``ResizeSpec``).
        activation: after each stage but the last (default ``"relu"``): see :class:`Activation`.
        norm: before that activation (default ``None``): see :class:`Norm`.
        final_activation: after the last stage (default ``None``).
        input_size: the input size the head is built for (default 1: a 1x1 latent).

    Every stage has the same ``spatial_dims`` (1, 2 or 3), which is the head's.
    """

    KIND: ClassVar[str] = KIND
    stages: tuple[Any, ...]
    activation: Activation | None
    norm: Norm | None
    final_activation: Activation | None
    input_size: Axes

    def __init__(
        self,
        stages: Sequence[Any],
        activation: Any = "relu",
        norm: Any = None,
        final_activation: Any = None,
        input_size: IntOrAxes = 1,
    ) -> None:
        if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence) or not stages:
            raise TypeError(f"stages must be a non-empty sequence of specs, got {shown(stages)}")
        checked = tuple(require_spec(stage, name=f"stages[{i}]") for i, stage in enumerate(stages))
        set_field = object.__setattr__.__get__(self)
        set_field("stages", checked)
        set_field("activation", as_activation(activation))
        set_field("norm", as_norm(norm))
        set_field("final_activation", as_activation(final_activation, "final_activation"))
        for i, stage in enumerate(checked[1:], start=1):
            if stage.spatial_dims != checked[0].spatial_dims:
                raise ValueError(
                    f"stages[{i}] has spatial_dims={stage.spatial_dims} but stages[0] has "
                    f"{checked[0].spatial_dims}: every stage of a head has the same number of spatial axes"
                )
        set_field("input_size", as_axes("input_size", input_size, self.spatial_dims, 1))
        self._validate()

    @property
    def spatial_dims(self) -> int:
        """The number of spatial axes of every stage (1, 2 or 3)."""
        return int(self.stages[0].spatial_dims)

    def _validate(self) -> None:
        for i, (stage, following) in enumerate(zip(self.stages, self.stages[1:], strict=False)):
            if stage.out_channels != following.in_channels:
                raise ValueError(
                    f"stages[{i + 1}].in_channels is {following.in_channels} but stages[{i}].out_channels is "
                    f"{stage.out_channels}: channels must chain"
                )
            if self.norm is not None and self.norm.kind == "group" and stage.out_channels % self.norm.groups:
                raise ValueError(
                    f"norm groups={self.norm.groups} does not divide stages[{i}].out_channels="
                    f"{stage.out_channels}; pick groups that divide every hidden stage's channels"
                )
        self.stage_sizes()

    def stage_sizes(self, input_size: IntOrAxes | None = None) -> tuple[Axes, ...]:
        """Each stage's input size, then the head's output size (``len(stages) + 1`` sizes)."""
        size = self.input_size if input_size is None else as_axes("input_size", input_size, self.spatial_dims, 1)
        sizes = [size]
        for i, stage in enumerate(self.stages):
            try:
                size = stage.output_size(size)
            except ValueError as error:
                raise ValueError(f"stages[{i}] cannot take its {size_text(size)} input: {error}") from None
            sizes.append(size)
        return tuple(sizes)

    @property
    def in_channels(self) -> int:
        return int(self.stages[0].in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.stages[-1].out_channels)

    def normed(self, index: int) -> bool:
        """Whether stage ``index`` is followed by the norm (every stage but the last, when there is one)."""
        return self.norm is not None and index < len(self.stages) - 1

    def activation_after(self, index: int) -> Activation | None:
        return self.final_activation if index == len(self.stages) - 1 else self.activation

    def output_size(self, input_size: IntOrAxes | None = None) -> Axes:
        """The spatial size of the head's output (default: for the spec's ``input_size``)."""
        return self.stage_sizes(input_size)[-1]

    def diagnose(self, input_size: IntOrAxes | None = None) -> HeadReport:
        """Each stage's coverage report at its own input size; ``ok`` only if every stage is."""
        sizes = self.stage_sizes(input_size)
        return HeadReport(tuple(stage.diagnose(size) for stage, size in zip(self.stages, sizes, strict=False)))

    def table(self, input_size: IntOrAxes | None = None) -> str:
        """The stages as a plain-text table (what ``upsample plan`` prints): sizes, channels, kind, kernel,
        stride or scale, what follows the stage, parameters, and the stage's coverage verdict."""
        sizes = self.stage_sizes(input_size)
        header = ("stage", "size", "channels", "kind", "kernel", "stride/scale", "then", "params", "coverage")
        rows = [header]
        for i, (stage, report) in enumerate(zip(self.stages, self.diagnose(input_size).stages, strict=True)):
            step = getattr(stage, "stride", None) or stage.scale
            step_text = "x".join(map(str, step)) if step else f"to {size_text(stage.size)}"  # a resize to a size
            after = [
                "blur" if stage.blur is not None else "",
                self.norm.kind + "norm" if self.normed(i) and self.norm else "",
                _name(self.activation_after(i)),
            ]
            rows.append(
                (
                    str(i), f"{size_text(sizes[i])} -> {size_text(sizes[i + 1])}",
                    f"{stage.in_channels} -> {stage.out_channels}",
                    type(stage).__name__, "x".join(map(str, stage.kernel_size or ["-"])), step_text,
                    " + ".join(a for a in after if a) or "-", f"{stage.num_params:,}", "ok" if report.ok else "NOT ok",
                )
            )  # fmt: skip
        widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
        return "\n".join(
            [*lines, f"total: {self.num_params:,} parameters, {self.flops(input_size):,} flops per sample"]
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Every array of the head by its file name (``stages.i.kernel``, ``norms.i.scale``, ...)."""
        shapes: dict[str, tuple[int, ...] | None] = {}
        for i, stage in enumerate(self.stages):
            shapes.update({f"stages.{i}.{name}": shape for name, shape in stage.weight_shapes().items()})
            if self.normed(i):
                batch = self.norm is not None and self.norm.kind == "batch"
                for name in NORM_ARRAYS:
                    shapes[f"norms.{i}.{name}"] = (
                        (stage.out_channels,) if batch or name in ("scale", "offset") else None
                    )
        return shapes

    @property
    def num_params(self) -> ParamCount:
        """Trainable values: every stage's, plus a scale and an offset per normalised channel."""
        norms = sum(2 * stage.out_channels for i, stage in enumerate(self.stages) if self.normed(i))
        return ParamCount(sum(stage.num_params() for stage in self.stages) + norms)

    def flops(self, input_size: IntOrAxes | None = None) -> int:
        """Per sample: every stage's flops, :data:`NORM_FLOPS_PER_VALUE` per normalised value and one per
        activated value."""
        sizes = self.stage_sizes(input_size)
        total = 0
        for i, stage in enumerate(self.stages):
            total += stage.flops(sizes[i])
            values = math.prod(sizes[i + 1]) * stage.out_channels
            total += NORM_FLOPS_PER_VALUE * values if self.normed(i) else 0
            total += values if self.activation_after(i) is not None else 0
        return total

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the format version, ``kind: "head"`` and each stage's own dict."""

        def optional(value: Norm | Activation | None) -> dict[str, Any] | None:
            return None if value is None else value.to_dict()

        return {
            "version": SPEC_FORMAT_VERSION,
            "kind": KIND,
            "stages": [stage.to_dict() for stage in self.stages],
            "activation": optional(self.activation),
            "norm": optional(self.norm),
            "final_activation": optional(self.final_activation),
            "input_size": list(self.input_size),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadSpec:
        """Inverse of :meth:`to_dict`; each stage is read by :func:`upsample.load_spec`."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a spec dict must be a mapping, got {type(data).__name__}")
        keys = {"version", "kind", "stages", "activation", "norm", "final_activation", "input_size"}
        if data.get("kind") != KIND and data.get("kind") not in OLD_KINDS:
            raise ValueError(f"spec kind must be {KIND!r} for a HeadSpec, got {shown(data.get('kind'))}")
        if data.get("version") != SPEC_FORMAT_VERSION:
            raise ValueError(f"spec format version {shown(data.get('version'))} is not supported")
        if set(data) != keys:
            raise ValueError(f"a head spec dict has exactly the keys {sorted(keys)}, got {shown(sorted(data))}")
        stages = data["stages"]
        if not isinstance(stages, list) or any(
            isinstance(stage, Mapping) and stage.get("kind") in (KIND, *OLD_KINDS) for stage in stages
        ):
            raise ValueError("head 'stages' must be a list of single-layer spec dicts (no nested heads)")
        return cls(
            [load_spec(stage) for stage in stages],
            activation=data["activation"],
            norm=data["norm"],
            final_activation=data["final_activation"],
            input_size=tuple(data["input_size"]) if isinstance(data["input_size"], list) else data["input_size"],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HeadSpec:
        from upsample.spec import parse_json

        return cls.from_dict(parse_json(text))

    # --- building ------------------------------------------------------------------------------

    def build(self, backend: str, *, weights: Any = None, **kwargs: Any) -> Any:
        """The native head for ``backend`` (``"torch"``, ``"keras"``, ``"flax"``, ``"nnx"``), holding
        ``weights`` (default ``init_weights(self, seed=0)``)."""
        import importlib

        from upsample import backends
        from upsample.head_weights import init_head

        backends.load(backend)  # a missing framework names its extra
        entry = backends.BACKENDS[backend]
        from upsample.head_weights import HeadWeights

        if weights is not None and not isinstance(weights, HeadWeights):
            hint = (
                " (one layer's weights): a head takes upsample.init_weights(head_spec)"
                if hasattr(weights, "kernel")
                else ""
            )
            raise TypeError(f"weights must be an upsample.HeadWeights, got {type(weights).__name__}{hint}")
        weights = init_head(self) if weights is None else weights.check(self)
        module = importlib.import_module(f"{entry.module}.head")
        return module.build(self, weights=weights, **{**entry.build_kwargs, **kwargs})


StackSpec = HeadSpec
"""The name :class:`HeadSpec` had before heads were called heads in code; kept for one release."""
