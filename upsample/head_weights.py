"""A head's canonical weights: :class:`HeadWeights` (one :class:`~upsample.Weights` per stage and
one :class:`NormWeights` per normalisation, running statistics included), seeded initialisation, and one
safetensors file per head with the :class:`~upsample.HeadSpec` JSON in its metadata."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from upsample.head import NORM_ARRAYS, HeadSpec
from upsample.messages import shown
from upsample.weights import (
    WEIGHTS_FORMAT_VERSION,
    Weights,
    WeightsFileError,
    init_weights,
    layer_weights,
    read_weights_file,
)


@dataclasses.dataclass(frozen=True, eq=False)
class NormWeights:
    """One normalisation's arrays, each ``(C,)``; ``running_mean``/``running_var`` are ``None`` for GroupNorm."""

    NAMES = NORM_ARRAYS

    scale: np.ndarray
    offset: np.ndarray
    running_mean: np.ndarray | None = None
    running_var: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray | None, ...]:
        return tuple(getattr(self, name) for name in self.NAMES)

    @classmethod
    def from_arrays(cls, arrays: Sequence[Any], dtype: Any = None) -> NormWeights:
        """``(scale, offset, running_mean, running_var)`` (the last two may be ``None``) as NumPy copies."""
        return cls(*(None if a is None else np.array(a, dtype=dtype) for a in arrays))  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, eq=False)
class HeadWeights:
    """A head's canonical weights: one :class:`~upsample.Weights` per stage and one :class:`NormWeights` (or
    ``None``) per stage, in the order of :attr:`HeadSpec.stages`."""

    stages: tuple[Weights, ...]
    norms: tuple[NormWeights | None, ...]

    def check(self, spec: HeadSpec) -> HeadWeights:
        """Return ``self`` if every array has the shape ``spec`` needs, else raise ``ValueError`` naming it."""
        if not isinstance(self, HeadWeights):
            raise TypeError(f"weights must be an upsample.HeadWeights, got {type(self).__name__}")
        for name, count in (("stages", len(spec.stages)), ("norms", len(spec.stages))):
            if len(getattr(self, name)) != count:
                raise ValueError(f"weights.{name} has {len(getattr(self, name))} entries; the spec has {count} stages")
        for i, (stage, weights) in enumerate(zip(spec.stages, self.stages, strict=True)):
            if not isinstance(weights, Weights):
                raise TypeError(f"weights.stages[{i}] must be an upsample.Weights, got {type(weights).__name__}")
            try:
                weights.check(stage)
            except ValueError as error:
                raise ValueError(f"weights.stages[{i}]: {error}") from None
        shapes = spec.weight_shapes()
        for i, norm in enumerate(self.norms):
            for name in NormWeights.NAMES:
                want = shapes.get(f"norms.{i}.{name}")
                got = None if norm is None or getattr(norm, name) is None else tuple(np.shape(getattr(norm, name)))
                if got != want:
                    raise ValueError(f"weights.norms[{i}].{name} has shape {got}; the spec needs {want}")
        return self

    def flat(self) -> dict[str, np.ndarray]:
        """Every present array by its file name (:meth:`HeadSpec.weight_shapes`)."""
        out: dict[str, np.ndarray] = {}
        for i, (stage, norm) in enumerate(zip(self.stages, self.norms, strict=True)):
            for name, array in zip(("kernel", "bias", "skip"), stage.arrays(), strict=True):
                if array is not None:
                    out[f"stages.{i}.{name}"] = np.asarray(array)
            for name, array in zip(NormWeights.NAMES, norm.arrays() if norm else (), strict=False):
                if array is not None:
                    out[f"norms.{i}.{name}"] = np.asarray(array)
        return out

    @classmethod
    def from_flat(cls, spec: HeadSpec, arrays: Mapping[str, np.ndarray]) -> HeadWeights:
        """Inverse of :meth:`flat`."""
        stages, norms = [], []
        for i in range(len(spec.stages)):
            stages.append(Weights(*(arrays.get(f"stages.{i}.{name}") for name in ("kernel", "bias", "skip"))))  # type: ignore[arg-type]
            values = [arrays.get(f"norms.{i}.{name}") for name in NormWeights.NAMES]
            norms.append(NormWeights(*values) if values[0] is not None else None)  # type: ignore[arg-type]
        return cls(tuple(stages), tuple(norms)).check(spec)

    def astype(self, dtype: Any) -> HeadWeights:
        return HeadWeights(
            tuple(stage.astype(dtype) for stage in self.stages),
            tuple(None if norm is None else NormWeights.from_arrays(norm.arrays(), dtype) for norm in self.norms),
        )


FALLBACK_SCHEME = "he_uniform"
"""What :func:`init_head` gives the stages a kind-specific scheme does not fit."""


def _fits(stage: Any, scheme: str) -> bool:
    """Whether ``scheme`` applies to ``stage``: ``"icnr"`` to sub-pixel stages, ``"bilinear"`` to transposed
    stages with as many output as input channels, every other scheme to every stage."""
    from upsample.weights import SCHEME_KINDS

    if scheme not in SCHEME_KINDS:
        return True
    return bool(
        stage.KIND == SCHEME_KINDS[scheme] and (scheme != "bilinear" or stage.in_channels == stage.out_channels)
    )


def stage_schemes(spec: HeadSpec, scheme: str = "he_uniform") -> tuple[str, ...]:
    """The scheme :func:`init_head` gives each stage: ``scheme`` where it fits, :data:`FALLBACK_SCHEME` elsewhere
    (``"icnr"`` on a sub-pixel head leaves its dense transposed first stage he_uniform). Raises ``ValueError``
    when ``scheme`` fits no stage."""
    from upsample.weights import SCHEMES, SUBPIXEL_SCHEMES

    if scheme not in (*SCHEMES, *SUBPIXEL_SCHEMES):
        raise ValueError(f"scheme must be one of {[*SCHEMES, *SUBPIXEL_SCHEMES]}, got {shown(scheme)}")
    chosen = tuple(scheme if _fits(stage, scheme) else FALLBACK_SCHEME for stage in spec.stages)
    if scheme not in chosen:
        needs = "a SubpixelSpec stage" if scheme == "icnr" else "a transposed stage with in_channels == out_channels"
        kinds = ", ".join(
            f"stages[{i}] {type(stage).__name__} {stage.in_channels} -> {stage.out_channels}"
            for i, stage in enumerate(spec.stages)
        )
        raise ValueError(f"scheme={scheme!r} fits no stage of this head: it needs {needs}; the head has {kinds}")
    return chosen


def init_head(spec: HeadSpec, seed: int = 0, scheme: str = "he_uniform", dtype: Any = np.float32) -> HeadWeights:
    """Canonical weights of a head: stage ``i`` gets ``init_weights(stage, seed=seed + i, scheme=...)`` with the
    scheme :func:`stage_schemes` gives it (``scheme`` where it fits, he_uniform elsewhere); norms start at
    scale 1, offset 0, running mean 0, running variance 1 (every framework's default)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {shown(seed)}")
    stages = []
    for i, (stage, stage_scheme) in enumerate(zip(spec.stages, stage_schemes(spec, scheme), strict=True)):
        try:
            stages.append(init_weights(stage, seed=seed + i, scheme=stage_scheme, dtype=dtype))
        except (ValueError, TypeError) as error:
            raise type(error)(f"stages[{i}]: {error}") from None
    norms: list[NormWeights | None] = []
    for i, stage in enumerate(spec.stages):
        if not spec.normed(i):
            norms.append(None)
            continue
        ones, zeros = np.ones(stage.out_channels, dtype), np.zeros(stage.out_channels, dtype)
        batch = spec.norm is not None and spec.norm.kind == "batch"
        norms.append(NormWeights(ones, zeros.copy(), zeros.copy() if batch else None, ones.copy() if batch else None))
    return HeadWeights(tuple(stages), tuple(norms))


# --- one safetensors file per head -----------------------------------------------------------


def save_head(path: str | os.PathLike[str], spec: HeadSpec, weights: HeadWeights) -> None:
    """Write a whole head (every stage, norm parameters and running statistics) to one safetensors file with
    the HeadSpec JSON in its metadata (``upsample.spec``, as :func:`upsample.save_weights` does)."""
    from safetensors.numpy import save_file

    single = "; a single layer's file is written by upsample.save_weights(path, spec, weights)"
    if not isinstance(spec, HeadSpec):
        hint = single if hasattr(spec, "weight_shapes") else ""
        hint = "; read JSON text with upsample.HeadSpec.from_json" if isinstance(spec, str) else hint
        raise TypeError(f"spec must be an upsample.HeadSpec, got {type(spec).__name__}{hint}")
    if not isinstance(weights, HeadWeights):
        made = "; a head's weights come from upsample.head_weights.init_head or a backend's get_weights(head)"
        hint = single if isinstance(weights, Weights) else made
        raise TypeError(f"weights must be an upsample.HeadWeights, got {type(weights).__name__}{hint}")
    weights.check(spec)
    tensors = {name: np.ascontiguousarray(array) for name, array in weights.flat().items()}
    save_file(
        tensors, os.fspath(path), metadata={"upsample.format": WEIGHTS_FORMAT_VERSION, "upsample.spec": spec.to_json()}
    )


def load_head(path: str | os.PathLike[str]) -> tuple[HeadSpec, HeadWeights]:
    """Read a file written by :func:`save_head`; nothing in it is executed. Raises
    :class:`~upsample.WeightsFileError` for anything that is not such a file."""
    return head_weights(*read_weights_file(path))


def head_weights(where: str, spec: Any, tensors: dict[str, np.ndarray]) -> tuple[HeadSpec, HeadWeights]:
    """A head's spec and weights from what :func:`~upsample.weights.read_weights_file` read."""
    if not isinstance(spec, HeadSpec):
        raise WeightsFileError(
            f"{shown(where)} holds a single {type(spec).__name__}: read it with upsample.load_weights"
        )
    unknown = sorted(set(tensors) - {name for name, shape in spec.weight_shapes().items() if shape is not None})
    if unknown:
        raise WeightsFileError(f"{shown(where)} has tensors its spec does not name: {shown(unknown)}")
    try:
        return spec, HeadWeights.from_flat(spec, tensors)
    except (ValueError, TypeError) as error:
        raise WeightsFileError(f"{shown(where)} does not match its own spec: {error}") from None


def load_any(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The spec and weights of a layer's (:func:`~upsample.save_weights`) or a head's (:func:`save_head`) file,
    whichever it holds: ``(spec, Weights)`` or ``(HeadSpec, HeadWeights)``."""
    where, spec, tensors = read_weights_file(path)
    if isinstance(spec, HeadSpec):
        return head_weights(where, spec, tensors)
    return layer_weights(where, spec, tensors)


# --- heads from native sequences -------------------------------------------------------------

Part = tuple[str, Any]
"""One native layer read by a backend's ``from_native``: ``("stage", (spec, Weights))``, ``("norm", (Norm,
NormWeights))``, ``("activation", Activation)``, or ``("other", what)`` for a layer with no place in a head."""


def assemble(parts: Sequence[Part], where: str, expected: str) -> tuple[HeadSpec, HeadWeights]:
    """The head a native sequence describes: stages, each but the last followed by the same norm (or none)
    and activation, the last by an optional activation. Errors name ``where[index]`` and say ``expected``."""
    stages: list[tuple[Any, Weights]] = []
    norms: list[tuple[Any, NormWeights] | None] = []
    activations: list[Any] = []
    for index, (role, value) in enumerate(parts):
        if role == "stage":
            stages.append(value)
            norms.append(None)
            activations.append(None)
        elif role != "other" and not stages:
            raise ValueError(f"{where}[{index}] ({role}) comes before any stage; expected {expected}")
        elif role == "norm" and norms[-1] is None and activations[-1] is None:
            norms[-1] = value
        elif role == "activation" and activations[-1] is None:
            activations[-1] = value
        else:
            what = value if role == "other" else f"a second {role} after one stage"
            raise ValueError(f"{where}[{index}] ({what}) has no place in a head: expected {expected}")
    if not stages:
        raise ValueError(f"{where} has no stage; expected {expected}")
    if norms[-1] is not None:
        raise ValueError(f"the last stage of {where} has a norm: a head's last stage has none")
    hidden_norms = {None if n is None else n[0] for n in norms[:-1]}
    hidden_activations = set(activations[:-1])
    if len(hidden_norms) > 1 or len(hidden_activations) > 1:
        raise ValueError(
            f"every stage of {where} but the last must have the same norm and activation to convert, got norms "
            f"{sorted(map(str, hidden_norms))} and activations {sorted(map(str, hidden_activations))}"
        )
    spec = HeadSpec(
        [stage for stage, _ in stages],
        activation=next(iter(hidden_activations), None),
        norm=next(iter(hidden_norms), None),
        final_activation=activations[-1],
    )
    weights = HeadWeights(tuple(w for _, w in stages), tuple(None if n is None else n[1] for n in norms))
    return spec, weights.check(spec)


StackWeights = HeadWeights
"""The name :class:`HeadWeights` had before heads were called heads in code; kept for one release."""
