"""``upsample.find`` for torch: every submodule :func:`upsample.backends.torch.from_native` reads, walked in
``named_modules`` order, a found block's own submodules left out; with an example input, each judged at the size
it is called with (forward pre-hooks record it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from upsample.backends.torch import blocks, common
from upsample.finder import Found

UPSAMPLING = (*common.TRANSPOSED.values(), nn.PixelShuffle, nn.Upsample)
"""The modules that make an ``nn.Sequential`` worth reading as a kind pattern or a head."""


def _generic(module: nn.Module) -> bool:
    """Whether the table's first row for ``module`` is the generic one (any ``nn.Sequential``), not a block's."""
    return next(block for block in blocks.BLOCKS if block.matches(module)) is blocks.BLOCKS[-1]


def _candidate(module: nn.Module) -> bool:
    """Whether a row of the table reads ``module``: a block row, or a sequence with an upsampling module in it."""
    if not any(block.matches(module) for block in blocks.BLOCKS):
        return False
    return not _generic(module) or any(isinstance(child, UPSAMPLING) for child in module.children())


def _input_shapes(model: nn.Module, example: Any, names: dict[nn.Module, str]) -> dict[str, tuple[int, ...]]:
    """The shape each of ``names``'s modules is first called with when ``model`` runs on ``example``."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            shapes.setdefault(names[module], tuple(args[0].shape))

    handles = [module.register_forward_pre_hook(record) for module in names]
    try:
        with torch.no_grad():
            model(*example) if isinstance(example, (tuple, list)) else model(example)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def find(model: nn.Module, example: Any = None) -> list[Found]:
    """The blocks of ``model`` ``from_native`` reads (see :func:`upsample.find`)."""
    candidates = {module: path for path, module in model.named_modules() if _candidate(module)}
    shapes = {} if example is None else _input_shapes(model, example, candidates)
    found: list[Found] = []
    taken: list[str] = []
    for module, path in candidates.items():
        if any(path == t or t == "" or path.startswith(t + ".") for t in taken):
            continue
        shape = shapes.get(path)
        size = None if shape is None else tuple(shape[2:])
        try:
            spec, weights = blocks.from_native(module, *((None, None) if shape is None else (shape[1], len(shape) - 2)))
        except (TypeError, ValueError) as error:
            if _generic(module):
                continue  # a sequence that is no pattern or head as a whole: its parts are looked at next
            found.append(Found(path, type(module).__name__, None, None, size, _problem(error, module, example)))
            taken.append(path)
            continue
        found.append(Found(path, type(module).__name__, spec, weights, size))
        taken.append(path)
    return found


def _problem(error: Exception, module: nn.Module, example: Any) -> str:
    if isinstance(module, nn.Upsample) and example is None:
        return "a bare nn.Upsample takes any channel count: pass example= (an input) so its channels are seen"
    return str(error)
