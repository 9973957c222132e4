"""What every Flax layer kind (linen and NNX) does around its own computation: the input rules, the
dead-pixel warning, unbatched input and the residual skip (docs/errors-and-limits.md says the rules).
Checks run on static shapes: once per trace under ``jax.jit``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from upsample import geometry
from upsample.checks import DeadPixelGuard, check_input

Array = Any

_GUARDS: dict[Any, DeadPixelGuard] = {}
"""One dead-pixel guard per spec: linen modules are re-created on every apply, so "warn once" is per
spec and input size for the process (NNX shares the rule so both APIs warn alike)."""


def run(
    spec: Any,
    x: Array,
    body: Callable[[Array, tuple[int, ...]], Array],
    project: Callable[[Array], Array] | None,
    dtype: Any,
) -> Array:
    """``body(x, spatial size)`` (blurred where the spec says) ``+ residual`` on channels-last ``x``
    (``(N, *spatial, C)``; unbatched ``(*spatial, C)`` too, as Flax's layers take it); the skip is ``x`` itself
    (cast to ``dtype``) or ``project(x)``, gathered to the output's size."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    size = check_input(spec, x.shape, "NHWC", floating, str(x.dtype), unbatched=True)
    _GUARDS.setdefault(spec, DeadPixelGuard(spec))(size)
    if x.ndim == spec.spatial_dims + 1:
        return run(spec, x[None], body, project, dtype)[0]
    y = body(x, size)  # type: ignore[arg-type]
    if spec.blur is not None:
        y = spec.blur.apply(y, range(1, x.ndim - 1), lambda parts, axis: jnp.concatenate(parts, axis), jnp.zeros_like)
    if spec.residual is None:
        return y
    source = project(x) if project is not None else x if dtype is None else x.astype(dtype)
    return y + nearest(source, y.shape[1:-1])


def check_unbatched(spec: Any, x: Array) -> None:
    """The input rules of a head's first stage ``spec`` on an unbatched ``x`` as the user passed it, before
    the head makes it a batch of one (so a message shows the user's shape)."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        check_input(spec, x.shape, "NHWC", jnp.issubdtype(x.dtype, jnp.floating), str(x.dtype), unbatched=True)


def nearest(source: Array, size: tuple[int, ...]) -> Array:
    """Channels-last ``source`` gathered to the spatial ``size`` by ``geometry.nearest_gather`` (length-1 axes
    broadcast)."""
    for axis, length in enumerate(size, start=1):
        indices = geometry.nearest_gather(source.shape[axis], length)
        if indices is not None:
            source = jnp.take(source, np.asarray(indices), axis=axis)
    return source


def native_arrays(conv: Any, params: Any, call: str) -> tuple[Array, Array | None]:
    """``(kernel, bias)`` of an existing Flax conv: an NNX one's own, a linen one's from ``params`` (its
    variables or the ``params`` tree) or, when bound, its variables; ``call`` is how to pass them, for the error."""
    if isinstance(conv, (nnx.Conv, nnx.ConvTranspose)):
        return conv.kernel[...], None if conv.bias is None else conv.bias[...]
    if params is None:
        if conv.scope is None:
            raise ValueError(f"an unbound linen {type(conv).__name__} holds no weights: call {call}")
        params = conv.variables
    params = params.get("params", params)
    return params["kernel"], params.get("bias")


def crop(y: Array, crops: tuple[tuple[int, int], ...], bias: Array | None) -> Array:
    """Crop channels-last ``y`` on every spatial axis; when ``y`` carries the bias already (``ConvTranspose``'s
    output), rows added for negative crops get ``bias`` alone."""
    windows = [geometry.slice_and_pad(crop, y.shape[1 + a]) for a, crop in enumerate(crops)]
    window = (slice(None), *(slice(start, stop) for (start, stop), _ in windows))
    kept = y[window]
    pads = tuple(pad for _, pad in windows)
    y = jnp.pad(kept, ((0, 0), *pads, (0, 0)))
    if bias is None or y.shape == kept.shape:
        return y
    added = np.pad(np.zeros(kept.shape[1:-1], bool), pads, constant_values=True)[..., None]
    return jnp.where(added, bias.astype(y.dtype), y)  # not y + mask * bias: 0 * inf is NaN


def per_axis(value: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """A Flax per-axis argument (``None``: 1, an int: on every axis) as one value per spatial axis."""
    return (1,) * rank if value is None else (value,) * rank if isinstance(value, int) else tuple(value)
