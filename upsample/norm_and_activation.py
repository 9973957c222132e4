"""The normalisation and activation a head puts between its stages, each constant stated once
(:class:`Norm`, :class:`Activation`), and the coercion of what users pass for them (a name, a dict, an
instance). :mod:`upsample.head` re-exports every name here."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from upsample.arguments import as_int
from upsample.messages import shown

NORM_KINDS = ("batch", "group", "instance", "layer")
ACTIVATION_KINDS = ("relu", "leaky_relu", "gelu", "tanh", "sigmoid", "silu", "elu")
ACTIVATION_ALIASES = {"swish": "silu"}
"""Other names accepted for a kind (``swish`` is SiLU: Keras, Flax and diffusers use both names)."""


def _float(name: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {shown(value)} ({type(value).__name__})")
    number = float(value)
    if not (number > low and (high is None or number <= high)):
        wanted = f"in ({low}, {high}]" if high is not None else f"> {low}"
        raise ValueError(f"{name} must be {wanted}, got {shown(value)}")
    return number


@dataclasses.dataclass(frozen=True)
class Norm:
    """A normalisation after a stage, with every constant explicit.

    Args:
        kind: ``"batch"`` (statistics over batch and pixels per channel) or ``"group"`` (per sample, over
            pixels and the channels of each group; Wu & He 2018).
        epsilon: added to the variance (default 1e-5: torch's and Flax's BatchNorm, torch's GroupNorm).
        momentum: BatchNorm only: the weight of the new batch in the running statistics (torch's
            convention; default 0.1). Keras's and Flax's ``momentum`` is ``1 - momentum``.
        groups: GroupNorm only: number of groups, must divide each normalised stage's channels (default 32,
            as Keras and Flax, Wu & He 2018).

    ``"instance"`` normalises per sample and channel over the pixels (GroupNorm with one channel per group;
    Ulyanov et al. 2016), ``"layer"`` per sample and pixel over the channels (the channels-only LayerNorm of
    ConvNeXt and diffusers; torch ``nn.GroupNorm(1, C)``'s LayerNorm over (C, H, W) is ``"group"`` with
    ``groups=1``). Both always have a per-channel scale and offset (torch ``InstanceNorm2d(affine=False)`` is
    scale 1, offset 0) and no running statistics (torch's ``track_running_stats=False`` default; MONAI's).
    """

    kind: str
    epsilon: float = 1e-5
    momentum: float = 0.1
    groups: int = 32

    def __post_init__(self) -> None:
        if self.kind not in NORM_KINDS:
            raise ValueError(f"norm kind must be one of {NORM_KINDS} or None, got {shown(self.kind)}")
        object.__setattr__(self, "epsilon", _float("norm epsilon", self.epsilon, 0.0))
        object.__setattr__(self, "momentum", _float("norm momentum", self.momentum, 0.0, 1.0))
        object.__setattr__(self, "groups", as_int("norm groups", self.groups, 1))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "epsilon": self.epsilon, "momentum": self.momentum, "groups": self.groups}


@dataclasses.dataclass(frozen=True)
class Activation:
    """A pointwise nonlinearity.

    Args:
        kind: ``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"tanh"``, ``"sigmoid"``, ``"silu"`` (``x * sigmoid(x)``;
            ``"swish"`` is accepted for it) or ``"elu"`` (``x`` above 0, ``alpha * (exp(x) - 1)`` below).
        slope: LeakyReLU's slope for negative inputs (default 0.01: torch's and Flax's; Keras's layer uses 0.3).
        approximate: GELU's tanh approximation (default ``False``: the exact erf form, torch's default;
            ``jax.nn.gelu`` and ``keras.ops.gelu`` default to the approximation).
        alpha: ELU's scale for negative inputs (default 1.0: torch's, Keras's and Flax's).
    """

    kind: str
    slope: float = 0.01
    approximate: bool = False
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.kind, str) and self.kind in ACTIVATION_ALIASES:
            object.__setattr__(self, "kind", ACTIVATION_ALIASES[self.kind])
        if self.kind not in ACTIVATION_KINDS:
            raise ValueError(f"activation must be one of {ACTIVATION_KINDS} or None, got {shown(self.kind)}")
        if isinstance(self.slope, bool) or not isinstance(self.slope, (int, float, np.floating)):
            raise TypeError(f"activation slope must be a number, got {shown(self.slope)}")
        object.__setattr__(self, "slope", float(self.slope))
        if not isinstance(self.approximate, bool):
            raise TypeError(f"activation approximate must be a bool, got {shown(self.approximate)}")
        object.__setattr__(self, "alpha", _float("activation alpha", self.alpha, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``alpha`` only for ELU, so other activations' JSON stays as it was."""
        data: dict[str, Any] = {"kind": self.kind, "slope": self.slope, "approximate": self.approximate}
        if self.kind == "elu":
            data["alpha"] = self.alpha
        return data


_Part = TypeVar("_Part", Norm, Activation)


def _coerced(cls: type[_Part], value: Any, name: str, expected: str) -> _Part | None:
    """``None``, a kind name, a ``cls`` or its dict, as a ``cls`` (or ``None``); errors name the argument."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls(value)
    if isinstance(value, Mapping):
        try:
            return cls(**value)
        except TypeError as error:  # an unknown key: say which argument held the dict
            raise TypeError(f"{name} {shown(dict(value))}: {error}") from None
    raise TypeError(f"{name} must be {expected}, got {shown(value)}")


def as_norm(value: Any, name: str = "norm") -> Norm | None:
    """``None``, ``"batch"``, ``"group"``, a :class:`Norm` or its dict, as a :class:`Norm` (or ``None``)."""
    return _coerced(Norm, value, name, f"None, one of {NORM_KINDS} or an upsample.head.Norm")


def as_activation(value: Any, name: str = "activation") -> Activation | None:
    """``None``, a kind name, an :class:`Activation` or its dict, as an :class:`Activation` (or ``None``)."""
    return _coerced(Activation, value, name, f"None, one of {ACTIVATION_KINDS} or an upsample.head.Activation")
