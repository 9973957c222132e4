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


def native(name: str, rank: int) -> Any:
    """Keras's layer class ``name`` for ``rank`` spatial axes: ``native("Conv{}DTranspose", 3)`` is
    ``keras.layers.Conv3DTranspose``."""
    return getattr(keras.layers, name.format(rank))


def to_channels_last(rank: int) -> tuple[int, ...]:
    """The permutation ``(N, C, *spatial) -> (N, *spatial, C)`` for ``rank`` spatial axes."""
    return (0, *range(2, rank + 2), 1)


def to_channels_first(rank: int) -> tuple[int, ...]:
    """The permutation ``(N, *spatial, C) -> (N, C, *spatial)`` for ``rank`` spatial axes."""
    return (0, rank + 1, *range(1, rank + 1))


def channels_last_call(layer: Any, x: Any, forward: Any) -> Any:
    """``forward(x_last, size)`` on the channels-last view of ``x`` (checked first), in the layer's ``data_format``:
    every layer runs channels-last inside (TensorFlow has no channels-first transposed convolution on CPU)."""
    size = checked_size(layer, x)
    if layer.data_format == "channels_first":
        y = forward(keras.ops.transpose(x, to_channels_last(len(size))), size)
        return keras.ops.transpose(y, to_channels_first(len(size)))
    return forward(x, size)


def check(layer: Any, shape: tuple[int | None, ...], floating: bool = True, dtype: str = "") -> tuple[Any, ...]:
    """``checks.check_input`` in the layer's layout; shape errors also name its ``data_format``."""
    try:
        return check_input(layer.spec, shape, layout(layer.data_format), floating, dtype, dynamic=True)
    except ValueError as error:
        hint = f"{type(layer).__name__} has data_format={layer.data_format!r}: it reads {layout(layer.data_format)}"
        raise ValueError(f"{error} ({hint})") from None


def checked_size(layer: Any, x: Any) -> tuple[Any, ...]:
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
    spatial = tuple(None if n is None else out for n, out in zip(size, known, strict=True))
    batch, channels = input_shape[0], layer.spec.out_channels
    if layer.data_format == "channels_first":
        return (batch, channels, *spatial)
    return (batch, *spatial, channels)


def finish(layer: Any, x: Any, y: Any) -> Any:
    """The kind's output ``y`` (channels-last) blurred, then the residual of the layer's input ``x`` added, as the
    spec says (either may be absent)."""
    if layer.spec.blur is not None:
        y = layer.spec.blur.apply(
            y,
            range(1, len(y.shape) - 1),
            lambda parts, axis: keras.ops.concatenate(parts, axis=axis),
            keras.ops.zeros_like,
        )
    return y if layer.spec.residual is None else y + residual(x, layer.skip, y)


def residual(x: Any, skip: Any, y: Any) -> Any:
    """The skip (identity, or the projection layer ``skip`` on the small input) gathered to channels-last ``y``'s
    size by nearest index along every spatial axis; an axis of length 1 is left to broadcasting, and sizes
    known only at run time take the same rule in ops."""
    source = x if skip is None else skip(x)
    for axis in range(1, len(y.shape) - 1):
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


def skip_kernel(skip: Any) -> np.ndarray:
    """The canonical ``(C_in, C_out)`` matrix of a bias-free 1x1 (x1) ``Conv{1,2,3}D`` projection."""
    kernel = to_numpy(skip.kernel)
    return kernel.reshape(kernel.shape[-2:])


def set_skip_kernel(skip: Any, matrix: Any) -> None:
    """Assign the canonical ``(C_in, C_out)`` ``matrix`` to a 1x1 (x1) projection ``skip``."""
    skip.kernel.assign(np.asarray(matrix).reshape(tuple(skip.kernel.shape)))


def to_numpy(variable: Any) -> np.ndarray:
    """A NumPy copy of a variable (bfloat16, which NumPy lacks, becomes float32)."""
    array = np.array(keras.ops.convert_to_numpy(variable))
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float32)
