"""Normalisation and activations of a head written once over an array namespace, for the Keras heads
(``keras.ops``, every Keras backend) and the Flax heads (``jax.numpy`` / ``jax.nn``).

Neither framework's native layers can follow the spec's convention exactly: Keras ``BatchNormalization``
and Flax ``BatchNorm`` update the running variance with the *biased* batch variance (the spec, as torch,
uses the unbiased one), and Keras ``GroupNormalization`` computes the variance as ``E[x^2] - E[x]^2``, which
loses everything on inputs with a large mean (0.8 off on TensorFlow, NaN on the torch backend
for mean 1e3, std 1e-2). So these are the few lines both use instead: two-pass variance, torch's momentum
and unbiased running variance. torch's own layers follow the convention and are used natively there.
"""

from __future__ import annotations

from typing import Any

from upsample.head import Activation, Norm

Array = Any


def _reduce_axes(rank: int, channel_axis: int) -> tuple[int, ...]:
    channel_axis %= rank
    return tuple(a for a in range(rank) if a != channel_axis)


def _per_channel(xp: Any, values: Array, rank: int, channel_axis: int) -> Array:
    """A ``(C,)`` array shaped to broadcast along ``channel_axis``."""
    shape = [1] * rank
    shape[channel_axis % rank] = -1
    return xp.reshape(values, tuple(shape))


def values_per_channel(shape: tuple[int | None, ...], channel_axis: int) -> int | None:
    """``B * H * W`` (the batch times every spatial axis) from a static shape, or ``None`` when part of it is
    unknown (symbolic)."""
    sizes = [shape[a] for a in _reduce_axes(len(shape), channel_axis)]
    if any(size is None for size in sizes):
        return None
    count = 1
    for size in sizes:
        count *= int(size)  # type: ignore[arg-type]
    return count


def require_batch_statistics(shape: tuple[int | None, ...], channel_axis: int) -> None:
    """The one rule for every build: training-mode BatchNorm on one value per channel raises ``ValueError``
    (torch refuses; Keras and Flax would divide zero by epsilon and return zeros)."""
    if values_per_channel(shape, channel_axis) == 1:
        raise ValueError(
            f"training-mode BatchNorm needs more than one value per channel (batch * pixels > 1), got "
            f"input shape {tuple(shape)}; use a batch of 2 or more, or inference mode"
        )


def batch_norm(
    xp: Any, x: Array, norm: Norm, scale: Array, offset: Array, mean: Array, var: Array, channel_axis: int
) -> Array:
    """Inference mode: normalise with the given (running) statistics."""
    rank = len(x.shape)
    inverse = 1.0 / xp.sqrt(_per_channel(xp, var, rank, channel_axis) + norm.epsilon)
    centred = x - _per_channel(xp, mean, rank, channel_axis)
    return centred * inverse * _per_channel(xp, scale, rank, channel_axis) + _per_channel(
        xp, offset, rank, channel_axis
    )


def batch_norm_train(
    xp: Any,
    x: Array,
    norm: Norm,
    scale: Array,
    offset: Array,
    running_mean: Array,
    running_var: Array,
    channel_axis: int,
    count: Any,
) -> tuple[Array, Array, Array]:
    """Training mode: normalise with the batch's mean and biased (two-pass) variance; return the output and
    the running statistics updated with momentum as the weight of the new batch and the unbiased variance
    (``count = B * H * W`` values per channel, a number or a scalar tensor)."""
    axes = _reduce_axes(len(x.shape), channel_axis)
    mean = xp.mean(x, axis=axes)
    centred = x - _per_channel(xp, mean, len(x.shape), channel_axis)
    var = xp.mean(xp.square(centred), axis=axes)
    y = batch_norm(xp, x, norm, scale, offset, mean, var, channel_axis)
    m = norm.momentum
    new_mean = (1.0 - m) * running_mean + m * mean
    new_var = (1.0 - m) * running_var + m * var * (count / (count - 1))
    return y, new_mean, new_var


def group_norm(
    xp: Any, x: Array, norm: Norm, scale: Array, offset: Array, channel_axis: int, shape: tuple[Any, ...]
) -> Array:
    """Per sample, over the pixels and the channels of each of ``norm.groups`` groups, two-pass variance;
    ``shape`` is ``x``'s shape as ``xp.shape`` gives it (dynamic sizes allowed). Also ``"instance"`` (a group
    per channel) and ``"layer"`` (over the channels of each pixel). Any number of spatial axes."""
    rank = len(shape)
    if norm.kind == "layer":
        mean = xp.mean(x, axis=channel_axis, keepdims=True)
        centred = x - mean
        var = xp.mean(xp.square(centred), axis=channel_axis, keepdims=True)
        normed = centred / xp.sqrt(var + norm.epsilon)
        return normed * _per_channel(xp, scale, rank, channel_axis) + _per_channel(xp, offset, rank, channel_axis)
    groups = shape[channel_axis % rank] if norm.kind == "instance" else norm.groups
    if channel_axis % rank == rank - 1:
        *_, channels = shape
        grouped = xp.reshape(x, (-1, *shape[1:-1], groups, channels // groups))
        axes = (*range(1, rank - 1), rank)
    else:
        channels = shape[1]
        grouped = xp.reshape(x, (-1, groups, channels // groups, *shape[2:]))
        axes = tuple(range(2, rank + 1))
    mean = xp.mean(grouped, axis=axes, keepdims=True)
    centred = grouped - mean
    var = xp.mean(xp.square(centred), axis=axes, keepdims=True)
    normed = xp.reshape(centred / xp.sqrt(var + norm.epsilon), xp.shape(x))
    return normed * _per_channel(xp, scale, rank, channel_axis) + _per_channel(xp, offset, rank, channel_axis)


def activate(functions: Any, activation: Activation | None, x: Array) -> Array:
    """``activation`` with ``functions`` = ``keras.ops`` or ``jax.nn`` (the same names and keywords)."""
    if activation is None:
        return x
    if activation.kind == "leaky_relu":
        return functions.leaky_relu(x, negative_slope=activation.slope)
    if activation.kind == "gelu":
        return functions.gelu(x, approximate=activation.approximate)
    if activation.kind == "elu":
        return functions.elu(x, alpha=activation.alpha)
    return getattr(functions, activation.kind)(x)
