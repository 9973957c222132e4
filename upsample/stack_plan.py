"""``plan``: the head a careful engineer would write from an input size to an output size: a dense
first stage from 1x1, then factor-2 stages (factor 3 or an odd rest where needed), halving channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from upsample.arguments import IntOrPair, Pair, as_int, as_pair
from upsample.messages import shown
from upsample.stack import StackSpec

MIN_DENSE_SIZE = 4
"""The dense first stage from 1x1 reaches at least this size (DCGAN's 1 -> 4), when the target allows."""


def _factors(ratio: int) -> list[int]:
    """Stage scales for one integer ratio: 2s first, then 3s, then the odd rest as one stage."""
    scales = []
    for factor in (2, 3):
        while ratio % factor == 0:
            scales.append(factor)
            ratio //= factor
    return scales + ([ratio] if ratio > 1 else [])


def _doublings(size: Pair) -> int:
    """How many factor-2 stages follow a dense 1x1 stage: as many as keep the dense size at least 4."""
    count = 0
    while all(n % 2 == 0 and n // 2 >= MIN_DENSE_SIZE for n in (s // 2**count for s in size)):
        count += 1
    return count


def _scales(source: Pair, target: Pair) -> list[Pair]:
    """Per-stage integer scales from ``source`` to ``target`` (an input larger than 1x1)."""
    for axis, s, t in zip(("height", "width"), source, target, strict=True):
        if t % s or t == s:
            raise ValueError(
                f"size {t} along {axis} is not a multiple (> 1) of input_size {s}: a head upsamples by integer "
                f"factors; pick a size that is {s} times an integer > 1 (e.g. {2 * s})"
            )
    rows, cols = _factors(target[0] // source[0]), _factors(target[1] // source[1])
    count = max(len(rows), len(cols))
    rows, cols = rows + [1] * (count - len(rows)), cols + [1] * (count - len(cols))
    return list(zip(rows, cols, strict=True))


def plan(
    in_channels: int,
    size: IntOrPair,
    out_channels: int | None = None,
    mode: str = "transposed",
    channels: Sequence[int] | None = None,
    norm: Any = None,
    activation: Any = "relu",
    final_activation: Any = None,
    input_size: IntOrPair = 1,
) -> StackSpec:
    """The head a careful engineer would write from ``input_size`` to ``size``.

    From 1x1: a dense transposed first stage (``UpsampleSpec.for_size``: kernel = its size, every pixel its
    own weights; resize from 1x1 would be a broadcast) to ``size / 2**k`` (at least 4 where the size allows,
    as DCGAN's 1 -> 4), then ``k`` factor-2 stages of ``mode``. From a larger input: factor-2 stages, then
    factor 3, then one stage for any odd rest. Every stage has every pixel live and even overlap.
    Channels: the dense stage keeps ``in_channels``, each later stage halves them (at least 1), the last
    gives ``out_channels`` (default: the halved count); or ``channels`` lists each stage's output channels.
    """
    from upsample import plans
    from upsample.spec import UpsampleSpec

    target, source = as_pair("size", size, 1), as_pair("input_size", input_size, 1)
    if mode not in plans.MODES:
        raise ValueError(f"mode must be one of {plans.MODES}, got {shown(mode)}")
    if source == (1, 1):
        if target == (1, 1):
            raise ValueError("size must be larger than 1 for a 1x1 input: there is nothing to upsample")
        doublings = _doublings(target)
        dense = (target[0] // 2**doublings, target[1] // 2**doublings)
        sizes, scales = [dense], [(2, 2)] * doublings
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
                f"channels lists {len(outs)} stages; this head from {source[0]}x{source[1]} to "
                f"{target[0]}x{target[1]} has {count}"
            )
        if out_channels is not None and outs[-1] != out_channels:
            raise ValueError(f"channels[-1]={outs[-1]} disagrees with out_channels={shown(out_channels)}")
    stages: list[Any] = []
    current = source
    for i in range(count):
        if i < len(sizes):
            stage = UpsampleSpec.for_size(c_in, sizes[i], out_channels=outs[i])
        else:
            scale = scales[i - len(sizes)]
            goal = (current[0] * scale[0], current[1] * scale[1])
            stage = plans.for_size(mode, c_in, goal, out_channels=outs[i], input_size=current)
        stages.append(stage)
        current, c_in = stage.output_size(current), outs[i]
    return StackSpec(stages, activation=activation, norm=norm, final_activation=final_activation, input_size=source)
