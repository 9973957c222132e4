"""The one rule for reading a head out of a flat native sequence, shared by every backend's ``from_native``.

A backend names each native layer's role (:data:`ROLES`); :func:`read_head` groups the roles into stages by
:data:`STAGE_PATTERNS` (a transposed convolution; a convolution then a pixel shuffle; a resize then a
convolution), each optionally followed by a blur (:data:`BLUR`: a pad, then an average pool at stride 1), one norm
and one activation, and hands each group back to the backend's single-layer readers. An activation between a
convolution and its pixel shuffle moves after the shuffle (it acts on each value alone, the shuffle only moves
values: fastai's ``PixelShuffle_ICNR``); a blur after an activation is a stage of its own, a resize alone by 1.
Nested sequences are flattened by the backend first, their positions kept (``layers[2][0]``). Pure Python: no
framework is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from upsample.head_weights import HeadWeights, Part, assemble
from upsample.weights import Weights

__all__ = ["BLUR", "ROLES", "STAGE_PATTERNS", "Layer", "accepted", "group", "read_head", "top_index"]

ROLES = ("transposed", "conv", "shuffle", "resize", "pad", "pool", "norm", "activation", "other")
"""What a native layer can be in a head; ``"other"`` has no place in one."""

STAGE_PATTERNS: dict[tuple[str, ...], str] = {
    ("transposed",): "transposed",
    ("conv", "shuffle"): "subpixel",
    ("resize", "conv"): "resize",
}
"""Runs of roles that make one stage, and the stage's kind."""
BLUR = ("pad", "pool")
"""The roles of a blur (fastai's and MONAI's pad + ``AvgPool`` at stride 1): the end of the stage before it, or a
stage of its own after an activation."""
_COMMUTING = (("conv", "activation", "shuffle"), (0, 2, 1))
"""An activation between a convolution and its pixel shuffle, and the order that reads it: after the shuffle."""

Layer = tuple[str, str, str, Any]
"""One flattened native layer: ``(position, type name, role, layer)``, e.g. ``("layers[2][0]", "Conv2d",
"conv", module)``."""


def accepted(names: Mapping[str, str], nested: str | None) -> str:
    """What a head may hold, in the backend's own class names (``names[role]``); roles a backend has no
    native layer for are left out."""
    stages = [
        " + ".join(names[role] for role in pattern)
        for pattern in STAGE_PATTERNS
        if all(role in names for role in pattern)
    ]
    listed = f"{', '.join(stages[:-1])} or {stages[-1]}" if len(stages) > 1 else stages[0]
    inside = f" (each also as a nested {nested})" if nested is not None else ""
    blur = f"a {names['pad']} + {names['pool']} (a blur), " if "pad" in names and "pool" in names else ""
    norm, activation = names["norm"], names["activation"]
    return f"{listed} stages{inside}, each followed by at most {blur}one {norm} and one {activation}"


def top_index(position: str) -> int:
    """``2`` for ``"layers[2][0]"``: the outer index, for readers that name a layer by one index (the full
    position is then added by :func:`read_head`)."""
    return int(position.split("[")[1].rstrip("]"))


Group = tuple[str, list[Layer]]


def group(layers: Sequence[Layer], expected: str, names: Mapping[str, str] | None = None) -> list[Group]:
    """Consecutive layers grouped as ``(kind, members)``: a stage kind of :data:`STAGE_PATTERNS`, ``"norm"``
    or ``"activation"``. A layer that starts no pattern or breaks one raises ``ValueError`` naming its
    position and type and saying ``expected``."""
    groups: list[Group] = []
    layers = list(layers)
    index = 0
    while index < len(layers):
        pattern, order = _COMMUTING
        if tuple(layer[2] for layer in layers[index : index + len(pattern)]) == pattern:
            layers[index : index + len(pattern)] = [layers[index + i] for i in order]
        position, name, role, _ = layers[index]
        if role in ("norm", "activation"):
            groups.append((role, [layers[index]]))
            index += 1
            continue
        if _roles(layers, index, len(BLUR)) == BLUR:  # after an activation: a stage of its own
            groups.append(("blur", layers[index : index + len(BLUR)]))
            index += len(BLUR)
            continue
        for stage, kind in STAGE_PATTERNS.items():
            if _roles(layers, index, len(stage)) == stage:
                size = len(stage) + (len(BLUR) if _roles(layers, index + len(stage), len(BLUR)) == BLUR else 0)
                groups.append((kind, layers[index : index + size]))
                index += size
                break
        else:
            follows = [
                p for p in STAGE_PATTERNS if p[0] == role and len(p) > 1 and (names is None or set(p) <= set(names))
            ]
            if follows:
                after = layers[index + 1] if index + 1 < len(layers) else None
                got = "nothing" if after is None else f"{after[0]} ({after[1]})"
                what = " or ".join((names or {}).get(p[1], f"{p[1]} layer") for p in follows)
                raise ValueError(
                    f"{position} ({name}) must be followed by {what} to make a stage, got {got}; expected {expected}"
                )
            raise ValueError(f"{position} ({name}) has no place in a head: expected {expected}")
    return groups


def _roles(layers: Sequence[Layer], index: int, count: int) -> tuple[str, ...]:
    return tuple(layer[2] for layer in layers[index : index + count])


def read_head(
    layers: Sequence[Layer],
    names: Mapping[str, str],
    nested: str | None,
    read_stage: Callable[[str, list[Any]], Any],
    read_norm: Callable[[str, Any], Any],
    read_activation: Callable[[Any], Any],
    where: str = "layers",
) -> tuple[Any, HeadWeights]:
    """The head ``layers`` describe as ``(HeadSpec, HeadWeights)``: ``read_stage(kind, native_layers)``,
    ``read_norm(position, layer)`` and ``read_activation(layer)`` are the backend's single-layer readers.
    ``names`` are the backend's class names by role, ``nested`` its sequence class if nested ones are
    flattened (see :func:`accepted`). A reader's error is re-raised
    naming the position of the layer it read."""
    expected = accepted(names, nested)
    parts: list[Part] = []
    seen: set[str] = set()
    for kind, members in group(layers, expected, names):
        position, name = members[0][0], members[0][1]
        if kind in ("norm", "activation"):
            if not parts:
                raise ValueError(
                    f"{position} ({kind}) comes before any stage: {name} must follow one; expected {expected}"
                )
            if kind in seen or (kind == "norm" and "activation" in seen):
                raise ValueError(f"{position} ({name}) has no place in a head: expected {expected}")
            seen.add(kind)
        else:
            seen = set()
        try:
            if kind == "norm":
                parts.append(("norm", read_norm(position, members[0][3])))
            elif kind == "activation":
                parts.append(("activation", read_activation(members[0][3])))
            elif kind == "blur":
                parts.append(("stage", _blur_alone(read_stage(kind, [layer for *_, layer in members]), parts)))
            else:
                parts.append(("stage", read_stage(kind, [layer for *_, layer in members])))
        except (ValueError, TypeError) as error:
            message = str(error)
            raise type(error)(message if message.startswith(position) else f"{position}: {message}") from None
    return assemble(parts, where, expected)


def _blur_alone(blur: Any, parts: Sequence[Part]) -> tuple[Any, Weights]:
    """A blur that follows an activation, as a stage of the channels before it: a resize alone by 1, then the blur."""
    from upsample.resize_spec import ResizeSpec

    stages = [value for role, value in parts if role == "stage"]
    if not stages:
        raise ValueError("a blur (pad + average pool) comes before any stage: it must follow one")
    before = stages[-1][0]
    spec = ResizeSpec(before.out_channels, scale=1, kernel_size=None, blur=blur, spatial_dims=before.spatial_dims)
    return spec, Weights(None)
