"""``upsample.find`` for Flax NNX: every module :func:`upsample.backends.flax.from_native` reads without being told
more, walked with ``nnx.iter_graph``: ``ConvTranspose`` layers, ``nnx.Sequential`` heads of them, and upsample's own
layers. A ``Conv`` before a pixel-shuffle or resize function is a plain function call in JAX, which no walk sees (give
``from_native`` its ``scale=``/``stages=``); linen modules hold no weights to walk."""

from __future__ import annotations

from typing import Any

from flax import nnx

from upsample.backends import own_layer
from upsample.finder import Found


def _candidate(module: Any) -> bool:
    if own_layer(module):
        return True
    if isinstance(module, nnx.ConvTranspose):
        return True
    return isinstance(module, nnx.Sequential) and any(isinstance(layer, nnx.ConvTranspose) for layer in module.layers)


def find(model: Any, example: Any = None) -> list[Found]:
    """The modules of ``model`` ``from_native`` reads (see :func:`upsample.find`; sizes are not traced here, so each is
    judged at :data:`upsample.finder.PROBE` pixels)."""
    from upsample.backends import flax as backend

    nodes = sorted(
        ((tuple(map(str, path)), node) for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)),
        key=lambda item: item[0],
    )
    found: list[Found] = []
    taken: list[tuple[str, ...]] = []
    for path, module in nodes:
        if not _candidate(module) or any(path[: len(t)] == t for t in taken):
            continue
        where = ".".join(path)
        try:
            layer: Any = module  # an NNX module; upsample's own carry their spec
            spec, weights = (layer.spec, backend.get_weights(layer)) if own_layer(layer) else backend.from_native(layer)
        except (TypeError, ValueError) as error:
            if isinstance(module, nnx.Sequential):
                continue  # not a head as a whole: its layers are looked at next
            found.append(Found(where, type(module).__name__, None, None, None, str(error)))
        else:
            if hasattr(spec, "stages") and len(spec.stages) == 1 and spec.final_activation is None:
                spec, weights = spec.stages[0], weights.stages[0]
            found.append(Found(where, type(module).__name__, spec, weights, None))
        taken.append(path)
    return found
