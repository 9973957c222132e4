"""``plan``: the head a careful engineer would write from an input size to an output size: a dense
first stage from 1x1, then factor-2 stages (factor 3 or an odd rest where needed), halving channels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from upsample.arguments import Axes, IntOrAxes, as_axes, as_int, axis_names, size_text, spatial_rank
from upsample.head import HeadSpec, Norm
from upsample.messages import shown

MIN_DENSE_SIZE = 4
"""The dense first stage from 1x1 reaches at least this size (DCGAN's 1 -> 4), when the target allows."""
MAX_GROUPS = 32
"""GroupNorm groups ``plan`` chooses at most (Wu & He 2018; diffusers' and MONAI's decoders use 32)."""


def _factors(ratio: int) -> list[int]:
    """Stage scales for one integer ratio: 2s first, then 3s, then the odd rest as one stage."""
    scales = []
    for factor in (2, 3):
        while ratio % factor == 0:
            scales.append(factor)
            ratio //= factor
    return scales + ([ratio] if ratio > 1 else [])


def _doublings(size: Axes) -> int:
    """How many factor-2 stages follow a dense 1x1 stage: as many as keep the dense size at least 4."""
    count = 0
    while all(n % 2 == 0 and n // 2 >= MIN_DENSE_SIZE for n in (s // 2**count for s in size)):
        count += 1
    return count


def _scales(source: Axes, target: Axes) -> list[Axes]:
    """Per-stage integer scales from ``source`` to ``target`` (an input larger than 1x1)."""
    for axis, s, t in zip(axis_names(len(source)), source, target, strict=True):
        if t % s or t == s:
            raise ValueError(
                f"size {t} along {axis} is not a multiple (> 1) of input_size {s}: a head upsamples by integer "
                f"factors; pick a size that is {s} times an integer > 1 (e.g. {2 * s})"
            )
    axes = [_factors(t // s) for s, t in zip(source, target, strict=True)]
    count = max(len(axis) for axis in axes)
    return list(zip(*(axis + [1] * (count - len(axis)) for axis in axes), strict=True))


def _group_norm(norm: Any, normed: Sequence[int]) -> Any:
    """``norm`` with its groups chosen when the user named none, or refused (naming the stages) when the
    given groups do not divide every normalised stage's channels; any other norm unchanged."""
    common = math.gcd(*normed) if normed else MAX_GROUPS
    chosen = max(g for g in range(1, MAX_GROUPS + 1) if common % g == 0)
    if isinstance(norm, str) and norm == "group":
        norm = {"kind": "group"}
    if isinstance(norm, Mapping) and norm.get("kind") == "group" and "groups" not in norm:
        return {**norm, "groups": chosen}
    groups = norm.groups if isinstance(norm, Norm) and norm.kind == "group" else None
    if isinstance(norm, Mapping) and norm.get("kind") == "group":
        groups = norm["groups"]
    if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0:
        bad = [f"stages[{i}] ({c})" for i, c in enumerate(normed) if c % groups]
        if bad:
            raise ValueError(
                f"norm groups={groups} does not divide the output channels of {', '.join(bad)}; give groups "
                f"that divide every normalised stage's channels (e.g. {chosen}), or leave groups out to let plan choose"
            )
    return norm


def plan(
    in_channels: int,
    size: IntOrAxes,
    out_channels: int | None = None,
    mode: str = "transposed",
    channels: Sequence[int] | None = None,
    norm: Any = None,
    activation: Any = "relu",
    final_activation: Any = None,
    input_size: IntOrAxes = 1,
    method: str | None = None,
    use_bias: bool = True,
    spatial_dims: int | None = None,
) -> HeadSpec:
    """The head a careful engineer would write from ``input_size`` to ``size``.

    From 1x1: a dense transposed first stage (``UpsampleSpec.for_size``: kernel = its size, every pixel its
    own weights; resize from 1x1 would be a broadcast) to ``size / 2**k`` (at least 4 where the size allows,
    as DCGAN's 1 -> 4), then ``k`` factor-2 stages of ``mode``. From a larger input: factor-2 stages, then
    factor 3, then one stage for any odd rest. Every stage has every pixel live and even overlap.
    Channels: the dense stage keeps ``in_channels``, each later stage halves them (at least 1), the last
    gives ``out_channels`` (default: the halved count); or ``channels`` lists each stage's output channels.

    ``norm``, ``activation`` and ``final_activation`` are as in :class:`HeadSpec`. ``norm="group"`` (or a dict
    without ``groups``) gets the largest group count up to :data:`MAX_GROUPS` that divides every normalised
    stage's channels (8 for normalised stages of 32, 16 and 8 channels); explicit groups that do not divide are refused,
    naming the stages. ``method`` (``"nearest"``, the default, or ``"bilinear"``) is the resize stages'
    interpolation (``mode="resize"`` only). ``use_bias`` applies to every stage (default ``True``, as every
    framework's layers); ``False`` drops the biases, which a following BatchNorm cancels anyway (DCGAN).
    ``spatial_dims`` (1, 2 or 3) defaults to the length of the sizes given as tuples, else 2.
    """
    from upsample import plans

    rank = spatial_rank(spatial_dims, {"size": size, "input_size": input_size})
    target, source = as_axes("size", size, rank, 1), as_axes("input_size", input_size, rank, 1)
    ones = (1,) * rank
    if mode not in plans.MODES:
        raise ValueError(f"mode must be one of {plans.MODES}, got {shown(mode)}")
    if method is not None and mode != "resize":
        raise ValueError(f"method applies to mode='resize' only, got method={shown(method)} with mode={shown(mode)}")
    if not isinstance(use_bias, bool):
        raise TypeError(f"use_bias must be a bool, got {shown(use_bias)} ({type(use_bias).__name__})")
    if source == ones:
        if target == ones:
            raise ValueError(f"size must be larger than 1 for a {size_text(ones)} input: there is nothing to upsample")
        doublings = _doublings(target)
        dense = tuple(n // 2**doublings for n in target)
        sizes, scales = [dense], [(2,) * rank] * doublings
    else:
        sizes, scales = [], _scales(source, target)
    count = len(sizes) + len(scales)
    c_in = as_int("in_channels", in_channels, 1)
    if channels is None:
        first = 0 if sizes else 1  # the dense stage keeps in_channels
        outs = [max(1, c_in // 2 ** (i + first)) for i in range(count)]
        if out_channels is not None:
            outs[-1] = as_int("out_channels", out_channels, 1)
    else:
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise TypeError(f"channels must be a sequence of ints, got {shown(channels)}")
        outs = [as_int(f"channels[{i}]", c, 1) for i, c in enumerate(channels)]
        if len(outs) != count:
            raise ValueError(
                f"channels lists {len(outs)} stages; this head from {size_text(source)} to "
                f"{size_text(target)} has {count}"
            )
        if out_channels is not None and outs[-1] != out_channels:
            raise ValueError(f"channels[-1]={outs[-1]} disagrees with out_channels={shown(out_channels)}")
    stages: list[Any] = []
    current = source
    for i in range(count):
        if i < len(sizes):
            stage = plans.for_size(
                "transposed", c_in, sizes[i], out_channels=outs[i], use_bias=use_bias, spatial_dims=rank
            )
        else:
            scale = scales[i - len(sizes)]
            goal = tuple(n * r for n, r in zip(current, scale, strict=True))
            stage = plans.for_size(
                mode,
                c_in,
                goal,
                out_channels=outs[i],
                input_size=current,
                method=method,
                use_bias=use_bias,
                spatial_dims=rank,
            )
        stages.append(stage)
        current, c_in = stage.output_size(current), outs[i]
    norm = _group_norm(norm, outs[:-1])
    return HeadSpec(stages, activation=activation, norm=norm, final_activation=final_activation, input_size=source)
