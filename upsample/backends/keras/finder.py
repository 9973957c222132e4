"""``upsample.find`` for Keras: every layer :func:`upsample.backends.keras.from_native` reads, walked through
models' ``layers`` (a ``keras.Sequential`` or chained functional model of stages is read whole, else its layers one
by one), each judged at the input size the built model gives it."""

from __future__ import annotations

from typing import Any

from upsample.backends import own_layer
from upsample.backends.keras import conv_native, head, transposed
from upsample.finder import Found

UPSAMPLING = (*transposed.NATIVE, *conv_native.RESIZE_LAYERS)
"""The layers that make a model worth reading as a head."""


def _input_shape(layer: Any) -> tuple[int | None, ...] | None:
    """The shape of the layer's input in its built model, ``None`` where the layer has no single known input."""
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError):
        return None


def _size_and_channels(layer: Any) -> tuple[tuple[int, ...] | None, int | None]:
    shape = _input_shape(layer)
    if shape is None:
        return None, None
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    spatial, channels = (shape[2:], shape[1]) if first else (shape[1:-1], shape[-1])
    known = None if None in spatial else tuple(int(n) for n in spatial if n is not None)
    return known, channels


def _candidate(layer: Any) -> bool:
    if own_layer(layer):
        return True
    if isinstance(layer, UPSAMPLING):
        return True
    inside = getattr(layer, "layers", None) or []
    return any(isinstance(child, UPSAMPLING) or head.shuffle_factor(child) is not None for child in inside)


def find(model: Any, example: Any = None) -> list[Found]:
    """The layers of ``model`` ``from_native`` reads (see :func:`upsample.find`; Keras models know their sizes, so
    ``example`` is not needed)."""
    from upsample.backends import keras as backend

    found: list[Found] = []

    def visit(layer: Any, path: str) -> None:
        if _candidate(layer):
            size, channels = _size_and_channels(layer)
            try:
                if isinstance(layer, conv_native.RESIZE_LAYERS):
                    spec, weights = backend.from_native(layer, in_channels=channels)
                else:
                    spec, weights = backend.from_native(layer)
            except (TypeError, ValueError) as error:
                if not getattr(layer, "layers", None):
                    found.append(Found(path, type(layer).__name__, None, None, size, str(error)))
                    return
            else:
                found.append(Found(path, type(layer).__name__, spec, weights, size))
                return
        for child in getattr(layer, "layers", None) or []:
            visit(child, f"{path}.{child.name}" if path else child.name)

    visit(model, "")
    return found
