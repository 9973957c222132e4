"""The NumPy reference for heads: forward in training and inference mode, the running-statistics
update, and the VJP, float64 NHWC, written for obviousness. Each stage runs through
:func:`upsample.reference.forward`/:func:`~upsample.reference.vjp`; normalisation and activations are
written out here from their textbook definitions (Ioffe & Szegedy 2015; Wu & He 2018; Hendrycks & Gimpel
2016 for GELU; Elfwing et al. 2018 for SiLU; Clevert et al. 2016 for ELU; Ulyanov et al. 2016 for instance
norm; Ba et al. 2016 for layer norm), independent of the backends' code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from upsample import reference
from upsample.head import Activation, HeadSpec
from upsample.head_weights import HeadWeights, NormWeights
from upsample.weights import Weights


def activate(activation: Activation | None, z: np.ndarray) -> np.ndarray:
    """The activation of ``z`` (identity for ``None``)."""
    if activation is None:
        return z
    kind = activation.kind
    if kind == "relu":
        return np.maximum(z, 0.0)
    if kind == "leaky_relu":
        return np.where(z > 0, z, activation.slope * z)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if kind == "silu":
        return z / (1.0 + np.exp(-z))
    if kind == "elu":
        return np.where(z > 0, z, activation.alpha * np.expm1(np.minimum(z, 0.0)))
    if activation.approximate:  # gelu, tanh form
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))
    return z * _normal_cdf(z)


def activate_derivative(activation: Activation | None, z: np.ndarray) -> np.ndarray:
    """``d activate(z) / dz``, pointwise."""
    if activation is None:
        return np.ones_like(z)
    kind = activation.kind
    if kind == "relu":
        return (z > 0).astype(np.float64)
    if kind == "leaky_relu":
        return np.where(z > 0, 1.0, activation.slope)
    if kind == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    if kind == "silu":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 + z * (1.0 - s))
    if kind == "elu":
        return np.where(z > 0, 1.0, activation.alpha * np.exp(np.minimum(z, 0.0)))
    if activation.approximate:
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (z + 0.044715 * z**3))
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t**2) * c * (1.0 + 3 * 0.044715 * z**2)
    return _normal_cdf(z) + z * np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


@dataclass
class _Normed:
    """What the VJP needs from one normalisation: the normalised values, ``1/sqrt(var + eps)`` broadcastable
    to them, and whether batch statistics were used (their gradient flows through the mean and variance)."""

    xhat: np.ndarray
    inverse: np.ndarray
    batch_statistics: bool


def _group_view(z: np.ndarray, groups: int) -> np.ndarray:
    return z.reshape(*z.shape[:-1], groups, z.shape[-1] // groups)


def _batch_axes(z: np.ndarray) -> tuple[int, ...]:
    """The batch and every spatial axis: what BatchNorm's statistics are means over."""
    return tuple(range(z.ndim - 1))


def _per_sample_view(z: np.ndarray, kind: str, groups: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``z`` viewed so that the statistics of a per-sample norm are means over the returned axes: group norm
    over pixels and a group's channels, instance norm over pixels (a group per channel), layer norm over
    channels (per pixel)."""
    if kind == "layer":
        return z, (z.ndim - 1,)
    return _group_view(z, z.shape[-1] if kind == "instance" else groups), (*range(1, z.ndim - 1), z.ndim)


def _normalise(
    spec: HeadSpec, norm: NormWeights, z: np.ndarray, training: bool
) -> tuple[np.ndarray, _Normed, NormWeights]:
    """``(scale * xhat + offset, what the VJP needs, the norm's weights with updated running statistics)``."""
    settings = spec.norm
    assert settings is not None
    scale, offset = (np.asarray(a, dtype=np.float64) for a in (norm.scale, norm.offset))
    if settings.kind != "batch":
        grouped, axes = _per_sample_view(z, settings.kind, settings.groups)
        mean = grouped.mean(axis=axes, keepdims=True)
        variance = ((grouped - mean) ** 2).mean(axis=axes, keepdims=True)
        inverse = 1.0 / np.sqrt(variance + settings.epsilon)
        xhat = ((grouped - mean) * inverse).reshape(z.shape)
        normed = _Normed(xhat, np.broadcast_to(inverse, grouped.shape).reshape(z.shape), True)
        return xhat * scale + offset, normed, norm
    count = int(np.prod(z.shape[:-1]))
    running_mean, running_var = (np.asarray(a, dtype=np.float64) for a in (norm.running_mean, norm.running_var))
    if training:
        if count < 2:
            raise ValueError(
                "training-mode BatchNorm needs more than one value per channel (batch * pixels > 1), "
                f"got input shape {z.shape}"
            )
        mean = z.mean(axis=_batch_axes(z))
        variance = ((z - mean) ** 2).mean(axis=_batch_axes(z))  # biased: the forward pass
        m = settings.momentum
        updated = NormWeights(
            norm.scale,
            norm.offset,
            (1 - m) * running_mean + m * mean,
            (1 - m) * running_var + m * variance * count / (count - 1),  # unbiased: the running statistic
        )
    else:
        mean, variance, updated = running_mean, running_var, norm
    inverse = 1.0 / np.sqrt(variance + settings.epsilon)
    xhat = (z - mean) * inverse
    return xhat * scale + offset, _Normed(xhat, np.broadcast_to(inverse, z.shape), training), updated


def _normalise_vjp(
    spec: HeadSpec, norm: NormWeights, normed: _Normed, grad: np.ndarray
) -> tuple[np.ndarray, NormWeights]:
    """Gradient w.r.t. the norm's input, and ``NormWeights(grad_scale, grad_offset)``."""
    settings = spec.norm
    assert settings is not None
    grad_scale = (grad * normed.xhat).sum(axis=_batch_axes(grad))
    grad_offset = grad.sum(axis=_batch_axes(grad))
    grad_xhat = grad * np.asarray(norm.scale, dtype=np.float64)
    if not normed.batch_statistics:
        return grad_xhat * normed.inverse, NormWeights(grad_scale, grad_offset)
    # mean and variance depend on the input: subtract the means of grad_xhat and grad_xhat * xhat
    axes: tuple[int, ...]
    if settings.kind != "batch":
        g, axes = _per_sample_view(grad_xhat, settings.kind, settings.groups)
        xhat, _ = _per_sample_view(normed.xhat, settings.kind, settings.groups)
    else:
        g, xhat, axes = grad_xhat, normed.xhat, _batch_axes(grad)
    centred = g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True)
    return centred.reshape(grad.shape) * normed.inverse, NormWeights(grad_scale, grad_offset)


def _run(
    spec: HeadSpec, weights: HeadWeights, x: np.ndarray, training: bool
) -> tuple[np.ndarray, list[Any], HeadWeights]:
    weights.check(spec)
    tape: list[Any] = []
    norms: list[NormWeights | None] = []
    y = np.asarray(x, dtype=np.float64)
    for i, (stage, stage_weights, norm) in enumerate(zip(spec.stages, weights.stages, weights.norms, strict=True)):
        stage_input = y
        z = reference.forward(stage, stage_weights, stage_input)
        normed = None
        if spec.normed(i):
            assert norm is not None
            z, normed, norm = _normalise(spec, norm, z, training)
        norms.append(norm)
        tape.append((stage_input, normed, z))
        y = activate(spec.activation_after(i), z)
    return y, tape, HeadWeights(weights.stages, tuple(norms))


def forward(
    spec: HeadSpec, weights: HeadWeights, x: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, HeadWeights]:
    """The head on channels-last ``x`` (float64), and its weights after the pass: in training mode BatchNorm uses batch
    statistics and updates the running ones; in inference mode the weights come back unchanged."""
    y, _, updated = _run(spec, weights, x, training)
    return y, updated


def vjp(
    spec: HeadSpec, weights: HeadWeights, x: np.ndarray, grad_y: np.ndarray, *, training: bool = False
) -> tuple[np.ndarray, HeadWeights]:
    """Gradients of ``sum(forward(...)[0] * grad_y)`` w.r.t. ``x`` and every trainable array; the norms'
    entries hold ``grad_scale``/``grad_offset`` (running statistics are not trained: ``None``)."""
    _, tape, _ = _run(spec, weights, x, training)
    grad = np.asarray(grad_y, dtype=np.float64)
    stage_grads: list[Weights] = []
    norm_grads: list[NormWeights | None] = []
    for i in reversed(range(len(spec.stages))):
        stage_input, normed, z = tape[i]
        grad = grad * activate_derivative(spec.activation_after(i), z)
        norm_grad = None
        if normed is not None:
            grad, norm_grad = _normalise_vjp(spec, weights.norms[i], normed, grad)  # type: ignore[arg-type]
        grad, stage_grad = reference.vjp(spec.stages[i], weights.stages[i], stage_input, grad)
        stage_grads.insert(0, stage_grad)
        norm_grads.insert(0, norm_grad)
    return grad, HeadWeights(tuple(stage_grads), tuple(norm_grads))


def sgd_step(
    spec: HeadSpec, weights: HeadWeights, x: np.ndarray, grad_y: np.ndarray, learning_rate: float
) -> HeadWeights:
    """One training-mode step of plain SGD on the loss ``sum(y * grad_y)``: every trainable array moves by
    ``-learning_rate * gradient``, running statistics take the batch's update."""
    _, updated = forward(spec, weights, x, training=True)
    _, grads = vjp(spec, weights, x, grad_y, training=True)

    def step(value: Any, gradient: Any) -> Any:
        return None if value is None else np.asarray(value, np.float64) - learning_rate * gradient

    stages = tuple(
        Weights(*(step(v, g) for v, g in zip(w.arrays(), gw.arrays(), strict=True)))
        for w, gw in zip(weights.stages, grads.stages, strict=True)
    )
    norms = tuple(
        None
        if n is None or g is None
        else NormWeights(step(n.scale, g.scale), step(n.offset, g.offset), n.running_mean, n.running_var)
        for n, g in zip(updated.norms, grads.norms, strict=True)
    )
    return HeadWeights(stages, norms)


class _Inference:
    """A head's reference in inference mode, with the interface of :class:`upsample.reference.Layer`: the row
    :data:`upsample.kinds.KINDS` names, read by :func:`upsample.reference.forward` and ``vjp``."""

    @staticmethod
    def forward(spec: HeadSpec, weights: HeadWeights, x: np.ndarray) -> np.ndarray:
        return forward(spec, weights, x)[0]

    @staticmethod
    def vjp(spec: HeadSpec, weights: HeadWeights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, HeadWeights]:
        return vjp(spec, weights, x, grad_y)


HEAD = _Inference()
