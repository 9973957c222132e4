"""Keras 3 heads: :class:`Head`, a ``keras.layers.Layer`` on any Keras backend and either
``data_format``, holding the stage layers of :mod:`upsample.backends.keras` and a small explicit norm.

Keras's own norm layers cannot follow the spec: ``BatchNormalization`` updates the running variance with the
biased batch variance (the spec, as torch, with the unbiased one), and ``GroupNormalization`` computes
``E[x^2] - E[x]^2``, inaccurate for inputs with a large mean. So :class:`HeadNorm` runs
:mod:`upsample.head_ops` in ``keras.ops``; its variables are ``scale``, ``offset`` (trainable) and
``moving_mean``, ``moving_variance`` (BatchNorm only, non-trainable), updated in ``call(..., training=True)``
(through ``assign``, so ``stateless_call`` returns them, as for Keras's own layers).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from upsample import head_ops, head_patterns
from upsample.backends import keras as stage_backend
from upsample.backends.keras import common, conv_native, transposed
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights, NormWeights
from upsample.spec import load_spec

__all__ = ["Head", "HeadNorm", "build", "from_native", "get_weights", "set_weights"]


@keras.saving.register_keras_serializable(package="upsample")
class HeadNorm(keras.layers.Layer):
    """The spec's batch, group, instance or layer norm over ``channels`` channels at ``channel_axis`` (see the
    module)."""

    def __init__(self, norm: Norm, channels: int, channel_axis: int = -1, **layer_kwargs: Any) -> None:
        super().__init__(**layer_kwargs)
        self.norm, self.channels, self.channel_axis = norm, channels, channel_axis
        self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale")
        self.offset = self.add_weight(shape=(channels,), initializer="zeros", name="offset")
        self.moving_mean = self.moving_variance = None
        if norm.kind == "batch":
            self.moving_mean = self.add_weight(
                shape=(channels,), initializer="zeros", name="moving_mean", trainable=False
            )
            self.moving_variance = self.add_weight(
                shape=(channels,), initializer="ones", name="moving_variance", trainable=False
            )
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        norm, axis, ops = self.norm, self.channel_axis, keras.ops
        if norm.kind != "batch":  # group, instance, layer: per sample, no running statistics
            return head_ops.group_norm(ops, x, norm, self.scale, self.offset, axis, ops.shape(x))
        if not training:
            return head_ops.batch_norm(
                ops, x, norm, self.scale, self.offset, self.moving_mean, self.moving_variance, axis
            )
        head_ops.require_batch_statistics(tuple(x.shape), axis)
        count = head_ops.values_per_channel(tuple(x.shape), axis)
        if count is None:  # a symbolic batch size: count at run time
            count = ops.cast(ops.size(x) // self.channels, x.dtype)
        y, mean, var = head_ops.batch_norm_train(
            ops, x, norm, self.scale, self.offset, self.moving_mean, self.moving_variance, axis, count
        )
        self.moving_mean.assign(mean)  # type: ignore[union-attr]
        self.moving_variance.assign(var)  # type: ignore[union-attr]
        return y

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "norm": self.norm.to_dict(),
            "channels": self.channels,
            "channel_axis": self.channel_axis,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HeadNorm:
        return cls(**{**config, "norm": Norm(**config["norm"])})


@keras.saving.register_keras_serializable(package="upsample")
class Head(keras.layers.Layer):
    """The head ``spec`` describes: stage layers ``stage_<i>``, norms ``norm_<i>``, activations in ``keras.ops``.

    Args:
        spec: the head.
        weights: canonical :class:`~upsample.HeadWeights`; ``None`` keeps Keras's initialisation.
        data_format: ``"channels_last"`` or ``"channels_first"`` (default ``keras.config.image_data_format()``).
        **layer_kwargs: ``name``, ``trainable``.
    """

    def __init__(
        self,
        spec: HeadSpec,
        *,
        weights: HeadWeights | None = None,
        data_format: str | None = None,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__(**layer_kwargs)
        if not isinstance(spec, HeadSpec):
            raise TypeError(f"spec must be an upsample.HeadSpec, got {type(spec).__name__}")
        data_format = common.data_format(data_format)
        self.spec, self.data_format = spec, data_format
        axis = -1 if data_format == "channels_last" else 1
        given = [None] * len(spec.stages) if weights is None else weights.check(spec).stages
        self.stage_layers = [
            stage_backend.build(stage, weights=w, data_format=data_format, name=f"stage_{i}")
            for i, (stage, w) in enumerate(zip(spec.stages, given, strict=True))
        ]
        self.norm_layers = [
            HeadNorm(spec.norm, stage.out_channels, axis, name=f"norm_{i}")  # type: ignore[arg-type]
            for i, stage in enumerate(spec.stages)
            if spec.normed(i)
        ]
        self.built = True
        if weights is not None:
            set_weights(self, weights)

    def call(self, x: Any, training: bool | None = None) -> Any:
        for i, stage in enumerate(self.stage_layers):
            x = stage(x)
            if self.spec.normed(i):
                x = self.norm_layers[i](x, training=training)
            x = head_ops.activate(keras.ops, self.spec.activation_after(i), x)
        return x

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        for stage in self.stage_layers:
            input_shape = stage.compute_output_shape(input_shape)
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spec": self.spec.to_dict(), "data_format": self.data_format}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Head:
        return cls(**{**config, "spec": load_spec(config["spec"])})


def build(spec: HeadSpec, *, weights: HeadWeights | None = None, **kwargs: Any) -> Head:
    """``Head(spec, weights=weights, **kwargs)``: what ``spec.build("keras")`` returns."""
    return Head(spec, weights=weights, **kwargs)


def _require_head(head: Any) -> Head:
    if not isinstance(head, Head):
        raise TypeError(f"head must be an upsample.backends.keras.head.Head, got {type(head).__name__}")
    return head


def _numpy(variable: Any) -> np.ndarray | None:
    return None if variable is None else common.to_numpy(variable)


def get_weights(head: Head) -> HeadWeights:
    """Every stage's canonical weights, the norms' scale and offset and the BatchNorms' running statistics."""
    head = _require_head(head)
    stages = tuple(stage_backend.get_weights(layer) for layer in head.stage_layers)
    norms: list[NormWeights | None] = [None] * len(stages)
    for i, layer in enumerate(head.norm_layers):
        arrays = (layer.scale, layer.offset, layer.moving_mean, layer.moving_variance)
        norms[i] = NormWeights(*(_numpy(a) for a in arrays))  # type: ignore[arg-type]
    return HeadWeights(stages, tuple(norms))


def set_weights(head: Head, weights: HeadWeights) -> None:
    """Assign canonical ``weights`` (running statistics included) to the head's variables."""
    head = _require_head(head)
    weights.check(head.spec)
    for layer, stage_weights in zip(head.stage_layers, weights.stages, strict=True):
        stage_backend.set_weights(layer, stage_weights)
    for layer, norm_weights in zip(head.norm_layers, weights.norms, strict=False):
        assert norm_weights is not None
        for variable, array in zip(
            (layer.scale, layer.offset, layer.moving_mean, layer.moving_variance), norm_weights.arrays(), strict=True
        ):
            if variable is not None:
                variable.assign(np.asarray(array))


# --- existing Keras models ----------------------------------------------------------------------

_FUNCTIONS = {
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "gelu": "gelu",
    "silu": "silu",
    "swish": "silu",
    "elu": "elu",
    "linear": None,
}


def _native_activation(layer: Any) -> Activation | None | str:
    """The layer's :class:`Activation`, ``None`` for a linear one, or why it has none."""
    if isinstance(layer, keras.layers.LeakyReLU):
        return Activation("leaky_relu", slope=float(layer.negative_slope))
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.max_value is None and float(layer.negative_slope) == 0 and float(layer.threshold) == 0
        return Activation("relu") if plain else "ReLU with max_value, negative_slope or threshold"
    if isinstance(layer, keras.layers.ELU):
        return Activation("elu", alpha=float(layer.alpha))
    name = keras.activations.serialize(layer.activation)
    name = name if isinstance(name, str) else str(name.get("config", name))
    if name not in _FUNCTIONS:
        return f"Activation({name!r})"
    kind = _FUNCTIONS[name]
    return None if kind is None else Activation(kind)  # keras.activations.gelu is exact by default


def _native_norm(index: int, layer: Any, channel_axis: int, rank: int) -> tuple[Norm, NormWeights]:
    """The spec's norm of a Keras norm layer on ``(N, *spatial, C)`` or ``(N, C, *spatial)`` tensors of ``rank``
    dimensions."""
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0] if len(layer.axis) == 1 else None
    if axis is None or axis % rank != channel_axis % rank or not (layer.center and layer.scale):
        raise ValueError(
            f"layers[{index}] ({type(layer).__name__}) must normalise the channel axis {channel_axis} with "
            f"center=True and scale=True to convert, got axis={layer.axis}, center={layer.center}, scale={layer.scale}"
        )
    if isinstance(layer, keras.layers.LayerNormalization):
        if getattr(layer, "rms_scaling", False):
            raise ValueError(f"layers[{index}] (LayerNormalization) with rms_scaling=True has no spec equivalent")
        norm = Norm("layer", epsilon=layer.epsilon)
        return norm, NormWeights.from_arrays([common.to_numpy(layer.gamma), common.to_numpy(layer.beta)])
    if isinstance(layer, keras.layers.GroupNormalization):
        # groups=-1 (set to the channel count on build) is Keras's instance normalisation: a group per channel
        instance = layer.groups in (-1, int(layer.gamma.shape[0]))
        groups = {} if instance else {"groups": layer.groups}
        norm = Norm("instance" if instance else "group", epsilon=layer.epsilon, **groups)
        return norm, NormWeights.from_arrays([common.to_numpy(layer.gamma), common.to_numpy(layer.beta)])
    if getattr(layer, "renorm", False):
        raise ValueError(f"layers[{index}] (BatchNormalization) with renorm=True has no spec equivalent")
    # Keras's momentum is the weight of the old value; the spec's the weight of the new batch.
    norm = Norm("batch", epsilon=layer.epsilon, momentum=1.0 - float(layer.momentum))
    arrays = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
    return norm, NormWeights.from_arrays([common.to_numpy(a) for a in arrays])


def _names(rank: int) -> dict[str, str]:
    """The Keras layers of each role at ``rank`` spatial axes, as messages name them.

    Keras has no pixel-shuffle layer: a sub-pixel stage is a convolution then a layer of the user's that calls
    ``keras.ops.depth_to_space`` (:data:`SHUFFLE_FACTORS`)."""
    return {
        "transposed": f"Conv{rank}DTranspose",
        "conv": f"Conv{rank}D",
        "shuffle": "a layer calling keras.ops.depth_to_space (with a block_size attribute)",
        "resize": f"UpSampling{rank}D",
        "norm": "BatchNormalization/GroupNormalization/LayerNormalization",
        "activation": "ReLU, LeakyReLU, ELU or Activation('relu' | 'tanh' | 'sigmoid' | 'gelu' | 'silu' | 'elu')",
    }


SHUFFLE_FACTORS = ("block_size", "upscale_factor")
"""The attribute that marks a layer of the user's as ``keras.ops.depth_to_space(x, factor, data_format=...)`` (Keras
has no pixel-shuffle layer): its int factor, under ``depth_to_space``'s or torch's name."""


def shuffle_factor(layer: Any) -> int | None:
    """The factor of a user's ``depth_to_space`` layer (:data:`SHUFFLE_FACTORS`), ``None`` for any other layer."""
    if type(layer).__module__.startswith("keras."):
        return None
    factors = [getattr(layer, name) for name in SHUFFLE_FACTORS if isinstance(getattr(layer, name, None), int)]
    return factors[0] if factors else None


def _role(layer: Any) -> str:
    """The layer's role in a head (:data:`upsample.head_patterns.ROLES`), or why an activation layer has none."""
    if shuffle_factor(layer) is not None:
        return "shuffle"
    if isinstance(layer, transposed.NATIVE):
        return "transposed"
    if isinstance(layer, conv_native.NATIVE):
        return "conv"
    if isinstance(layer, (keras.layers.UpSampling1D, keras.layers.UpSampling2D, keras.layers.UpSampling3D)):
        return "resize"
    norms = (keras.layers.BatchNormalization, keras.layers.GroupNormalization, keras.layers.LayerNormalization)
    if isinstance(layer, norms):
        return "norm"
    if isinstance(layer, (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.Activation)):
        activation = _native_activation(layer)
        return activation if isinstance(activation, str) else "activation" if activation else "linear"
    return "other"


def _flat(layers: list[Any], where: str) -> list[head_patterns.Layer]:
    """Every layer with its position and role, nested ``keras.Sequential`` flattened, linear activations
    (the identity) left out."""
    flat: list[head_patterns.Layer] = []
    for index, layer in enumerate(layers):
        position = f"{where}[{index}]"
        if isinstance(layer, keras.Sequential):
            flat.extend(_flat(list(layer.layers), position))
            continue
        if isinstance(layer, keras.layers.InputLayer):  # a functional model's input: no computation
            continue
        role = _role(layer)
        if role in head_patterns.ROLES:
            flat.append((position, type(layer).__name__, role, layer))
        elif role != "linear":
            flat.append((position, role, "other", layer))
    return flat


def _stage(kind: str, layers: list[Any]) -> Any:
    if kind == "transposed":
        return stage_backend.from_native(layers[0])
    if kind == "subpixel":
        convolution, shuffle = layers
        return stage_backend.from_native(convolution, scale=shuffle_factor(shuffle))
    resize, convolution = layers
    # UpSampling1D has neither data_format (always channels-last) nor interpolation (nearest)
    resize_format = getattr(resize, "data_format", "channels_last")
    if resize_format != convolution.data_format:
        raise ValueError(
            f"{type(resize).__name__} has data_format={resize_format!r} and the {type(convolution).__name__} "
            f"after it {convolution.data_format!r}"
        )
    size = resize.size if isinstance(resize.size, int) else tuple(resize.size)
    method = getattr(resize, "interpolation", "nearest")
    return stage_backend.from_native(convolution, scale=size, method=method)


def _chain(model: Any) -> list[Any]:
    """The layers of a list, a ``keras.Sequential`` or a functional model whose layers form one chain (each takes the
    output of the one before); a functional model that branches is refused, naming where."""
    if not hasattr(model, "layers"):
        return list(model)
    layers = list(model.layers)
    if isinstance(model, keras.Sequential) or not isinstance(model, keras.Model):
        return layers
    computing = [layer for layer in layers if not isinstance(layer, keras.layers.InputLayer)]
    for before, after in zip(computing, computing[1:], strict=False):
        try:
            chained = after.input is before.output
        except (AttributeError, ValueError):  # a layer called more than once has no single input
            chained = False
        if not chained:
            raise ValueError(
                f"a functional model is read as a head when its layers form one chain; {after.name!r} does not take "
                f"the output of {before.name!r}"
            )
    return layers


def from_native(model: Any) -> tuple[HeadSpec, HeadWeights]:
    """Spec and canonical weights of a built ``keras.Sequential`` (or list of layers) of stages
    (``Conv{1,2,3}DTranspose``; ``UpSampling{1,2,3}D`` + ``Conv{1,2,3}D``; ``Conv{1,2,3}D`` + a layer of the user's
    calling ``keras.ops.depth_to_space``, :data:`SHUFFLE_FACTORS`; flat or as a nested ``keras.Sequential``; a
    functional model whose layers form one chain reads the same),
    each but the
    last followed by the same ``BatchNormalization``/``GroupNormalization`` (or none) and activation layer
    (``ReLU``, ``LeakyReLU``, ``Activation``), the last by an optional activation.

    The converted head computes the same outputs in inference and training mode; its running variance then
    follows the spec (unbiased, as torch), where Keras's own ``BatchNormalization`` uses the biased variance.
    Build it with ``data_format`` of the model's convolutions."""
    layers = _flat(_chain(model), "layers")
    convs = [layer for _, _, role, layer in layers if role in ("transposed", "conv")]
    channel_axis = -1 if not convs or convs[0].data_format == "channels_last" else 1
    spatial = 2 if not convs else len(convs[0].kernel_size)  # messages name the layers of the model's rank
    return head_patterns.read_head(
        layers,
        _names(spatial),
        "keras.Sequential",
        _stage,
        lambda position, layer: _native_norm(head_patterns.top_index(position), layer, channel_axis, spatial + 2),
        _native_activation,
    )
