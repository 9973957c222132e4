"""What every Keras layer kind does around its own computation: the input rules and the shape they
give (spatial sizes may be unknown, as in ``keras.Input((None, None, C))``), the dead-pixel warning,
the residual skip, and reading variables out as NumPy (docs/errors-and-limits.md says the rules)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from upsample import geometry
from upsample.checks import DeadPixelGuard, check_input

DATA_FORMATS = ("channels_last", "channels_first")


def data_format(value: str | None) -> str:
    """``value``, or ``keras.config.image_data_format()`` for ``None``; refuses anything else."""
    value = keras.config.image_data_format() if value is None else value
    if value not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS} or None, got {value!r}")
    return value


def layout(data_format: str) -> str:
    return "NHWC" if data_format == "channels_last" else "NCHW"


def check(layer: Any, shape: tuple[int | None, ...], floating: bool = True, dtype: str = "") -> tuple[Any, Any]:
    """``checks.check_input`` in the layer's layout; shape errors also name its ``data_format``."""
    try:
        return check_input(layer.spec, shape, layout(layer.data_format), floating, dtype, dynamic=True)
    except ValueError as error:
        hint = f"{type(layer).__name__} has data_format={layer.data_format!r}: it reads {layout(layer.data_format)}"
        raise ValueError(f"{error} ({hint})") from None


def checked_size(layer: Any, x: Any) -> tuple[Any, Any]:
    """:func:`check` on a call's input, then the warning (once per input size and layer) about dead
    pixels or no upsampling, pointing at the user's line."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    size = check(layer, tuple(x.shape), keras.backend.is_float_dtype(dtype), dtype)
    guard = layer.__dict__.get("_guard")
    if guard is None:
        guard = layer.__dict__["_guard"] = DeadPixelGuard(layer.spec)
    guard(size)
    return size


def output_shape(layer: Any, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """The exact output shape; an unknown (``None``) batch or spatial size stays unknown."""
    size = check(layer, tuple(input_shape))
    known = layer.spec.output_size(tuple(1 if n is None else n for n in size))  # each axis on its own
    height, width = (None if n is None else out for n, out in zip(size, known, strict=True))
    batch, channels = input_shape[0], layer.spec.out_channels
    if layer.data_format == "channels_first":
        return (batch, channels, height, width)
    return (batch, height, width, channels)


def residual(x: Any, skip: Any, y: Any, axes: tuple[int, int] = (1, 2)) -> Any:
    """The skip (identity, or the projection layer ``skip`` on the small input) gathered to ``y``'s size
    by nearest index along the spatial ``axes``; an axis of length 1 is left to broadcasting, and sizes
    known only at run time take the same rule in ops."""
    source = x if skip is None else skip(x)
    for axis in axes:
        in_length, out_length = source.shape[axis], y.shape[axis]
        if in_length is None or out_length is None:
            source = keras.ops.take(source, _nearest_indices(source, y, axis), axis=axis)
            continue
        indices = geometry.nearest_gather(in_length, out_length)
        if indices is not None:
            source = keras.ops.take(source, keras.ops.convert_to_tensor(indices, dtype="int32"), axis=axis)
    return source


def _nearest_indices(source: Any, y: Any, axis: int) -> Any:
    """``geometry.nearest_indices`` as ops: ``((2 d + 1) in) // (2 out)``."""
    in_length, out_length = (keras.ops.cast(keras.ops.shape(t)[axis], "int32") for t in (source, y))
    destination = keras.ops.arange(out_length, dtype="int32")
    return (2 * destination + 1) * in_length // (2 * out_length)


def to_numpy(variable: Any) -> np.ndarray:
    """A NumPy copy of a variable (bfloat16, which NumPy lacks, becomes float32)."""
    array = np.array(keras.ops.convert_to_numpy(variable))
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float32)
