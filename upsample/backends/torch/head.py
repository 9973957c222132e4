"""PyTorch heads: :class:`Head`, an ``nn.Module`` (NCHW) holding an ``nn.Sequential`` of the stage
layers (built by :func:`upsample.backends.torch.build`) and torch's own norm and activation layers.

Every constant of the spec maps exactly onto a native layer: ``nn.BatchNorm2d(eps, momentum)`` uses the
spec's convention (momentum = weight of the new batch, unbiased running variance), ``nn.GroupNorm`` the
two-pass variance, ``nn.GELU(approximate="none" | "tanh")``, ``nn.LeakyReLU(slope)``. A training-mode
BatchNorm on one value per channel raises torch's own ``ValueError``: the rule every build follows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from upsample import head_patterns
from upsample.backends import torch as stage_backend
from upsample.backends.torch import blocks, common, conv_native, transposed
from upsample.backends.torch.common import check_unbatched
from upsample.backends.torch.common import to_numpy as _numpy
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights, NormWeights

__all__ = ["Head", "build", "from_native", "get_weights", "set_weights"]


def _activation(activation: Activation) -> nn.Module:
    if activation.kind == "relu":
        return nn.ReLU()
    if activation.kind == "leaky_relu":
        return nn.LeakyReLU(activation.slope)
    if activation.kind == "gelu":
        return nn.GELU(approximate="tanh" if activation.approximate else "none")
    if activation.kind == "silu":
        return nn.SiLU()
    if activation.kind == "elu":
        return nn.ELU(alpha=activation.alpha)
    return nn.Tanh() if activation.kind == "tanh" else nn.Sigmoid()


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of an ``(N, C, *spatial)`` tensor (ConvNeXt's and diffusers'
    ``channels_first`` LayerNorm): torch's own ``nn.functional.layer_norm`` on the channels-last view."""

    def __init__(self, channels: int, eps: float, **factory: Any) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, **factory))
        self.bias = nn.Parameter(torch.zeros(channels, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.layer_norm(x.movedim(1, -1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


BATCH_NORMS: dict[int, type[_BatchNorm]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
INSTANCE_NORMS: dict[int, type[_InstanceNorm]] = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _norm(norm: Norm, channels: int, rank: int, **factory: Any) -> nn.Module:
    if norm.kind == "batch":
        return BATCH_NORMS[rank](channels, eps=norm.epsilon, momentum=norm.momentum, **factory)
    if norm.kind == "instance":
        return INSTANCE_NORMS[rank](channels, eps=norm.epsilon, affine=True, **factory)
    if norm.kind == "layer":
        return ChannelLayerNorm(channels, norm.epsilon, **factory)
    return nn.GroupNorm(norm.groups, channels, eps=norm.epsilon, **factory)


class Head(nn.Module):
    """The head ``spec`` describes, on NCHW tensors: ``layers`` is an ``nn.Sequential`` of stage, norm and
    activation modules; ``train()``/``eval()`` switch the BatchNorms as usual.

    Args:
        spec: the head.
        weights: canonical :class:`~upsample.HeadWeights`; ``None`` keeps torch's initialisation.
        device, dtype: passed to every parameter, as for any torch layer.
    """

    def __init__(
        self,
        spec: HeadSpec,
        *,
        weights: HeadWeights | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(spec, HeadSpec):
            raise TypeError(f"spec must be an upsample.HeadSpec, got {type(spec).__name__}")
        self.spec = spec
        modules: list[nn.Module] = []
        self.stage_positions: list[int] = []
        self.norm_positions: list[int | None] = []
        for i, stage in enumerate(spec.stages):
            self.stage_positions.append(len(modules))
            modules.append(stage_backend.build(stage, device=device, dtype=dtype))
            self.norm_positions.append(len(modules) if spec.normed(i) else None)
            if spec.normed(i):
                norm = _norm(spec.norm, stage.out_channels, spec.spatial_dims, device=device, dtype=dtype)  # type: ignore[arg-type]
                modules.append(norm)
            activation = spec.activation_after(i)
            if activation is not None:
                modules.append(_activation(activation))
        self.layers = nn.Sequential(*modules)
        if weights is not None:
            set_weights(self, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial)`` -> ``(B, C_out, *spec.output_size(spatial))`` (``(B, C_in, H, W)`` in 2-D); an
        unbatched ``(C_in, *spatial)`` too, as the stage layers take it (a batch of one for the norms)."""
        if isinstance(x, torch.Tensor) and x.dim() == self.spec.spatial_dims + 1:
            check_unbatched(self.spec.stages[0], x)  # messages show the shape passed, not the batch of one
            return self.layers(x.unsqueeze(0)).squeeze(0)
        return self.layers(x)


def build(spec: HeadSpec, *, weights: HeadWeights | None = None, **kwargs: Any) -> Head:
    """``Head(spec, weights=weights, **kwargs)``: what ``spec.build("torch")`` returns."""
    return Head(spec, weights=weights, **kwargs)


def _require_head(head: Any) -> Head:
    if not isinstance(head, Head):
        raise TypeError(f"head must be an upsample.backends.torch.head.Head, got {type(head).__name__}")
    return head


def _norm_tensors(norm: Any) -> list[Any]:
    """``(weight, bias, running_mean, running_var)`` of a BatchNorm2d; GroupNorm has no running statistics."""
    return [norm.weight, norm.bias, getattr(norm, "running_mean", None), getattr(norm, "running_var", None)]


def get_weights(head: Head) -> HeadWeights:
    """Every stage's canonical weights, the norms' scale and offset and the BatchNorms' running statistics."""
    head = _require_head(head)
    stages = tuple(stage_backend.get_weights(head.layers[p]) for p in head.stage_positions)
    norms: list[NormWeights | None] = []
    for position in head.norm_positions:
        if position is None:
            norms.append(None)
            continue
        arrays = _norm_tensors(head.layers[position])
        norms.append(NormWeights.from_arrays([None if a is None else _numpy(a) for a in arrays]))
    return HeadWeights(stages, tuple(norms))


def set_weights(head: Head, weights: HeadWeights) -> None:
    """Copy canonical ``weights`` (running statistics included) into the head."""
    head = _require_head(head)
    weights.check(head.spec)
    for position, stage_weights in zip(head.stage_positions, weights.stages, strict=True):
        stage_backend.set_weights(head.layers[position], stage_weights)
    with torch.no_grad():
        for place, norm_weights in zip(head.norm_positions, weights.norms, strict=True):
            if place is None or norm_weights is None:
                continue
            for target, value in zip(_norm_tensors(head.layers[place]), norm_weights.arrays(), strict=True):
                if target is not None and value is not None:
                    target.copy_(torch.as_tensor(np.asarray(value)))


# --- existing torch models ----------------------------------------------------------------------

_ACTIVATIONS: dict[type, str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.GELU: "gelu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.ELU: "elu",
}


def _native_activation(module: nn.Module) -> Activation:
    kind = _ACTIVATIONS[type(module)]
    if kind == "leaky_relu":
        return Activation(kind, slope=module.negative_slope)  # type: ignore[arg-type]
    if kind == "gelu":
        return Activation(kind, approximate=module.approximate == "tanh")
    if kind == "elu":
        return Activation(kind, alpha=module.alpha)  # type: ignore[arg-type]
    return Activation(kind)


def _native_norm(index: int, module: nn.Module) -> tuple[Norm, NormWeights]:
    if isinstance(module, _InstanceNorm):
        if module.track_running_stats:
            raise ValueError(
                f"sequential[{index}] ({type(module).__name__}) must have track_running_stats=False to convert: "
                "the spec's instance norm keeps no running statistics"
            )
        channels = module.num_features
        scale = _numpy(module.weight) if module.affine else np.ones(channels, np.float32)
        offset = _numpy(module.bias) if module.affine else np.zeros(channels, np.float32)
        return Norm("instance", epsilon=module.eps), NormWeights(scale, offset)
    if isinstance(module, ChannelLayerNorm):
        return Norm("layer", epsilon=module.eps), NormWeights(_numpy(module.weight), _numpy(module.bias))
    if isinstance(module, nn.GroupNorm):
        if not module.affine:
            raise ValueError(f"sequential[{index}] (GroupNorm) must have affine=True to convert")
        return Norm("group", epsilon=module.eps, groups=module.num_groups), NormWeights(
            _numpy(module.weight), _numpy(module.bias)
        )
    if not (module.affine and module.track_running_stats) or module.momentum is None:
        raise ValueError(
            f"sequential[{index}] ({type(module).__name__}) must have affine=True, track_running_stats=True and a "
            f"momentum (not None: a cumulative average has no spec equivalent), got affine={module.affine}, "
            f"track_running_stats={module.track_running_stats}, momentum={module.momentum}"
        )
    arrays = (module.weight, module.bias, module.running_mean, module.running_var)
    return Norm("batch", epsilon=module.eps, momentum=module.momentum), NormWeights(*(_numpy(a) for a in arrays))  # type: ignore[arg-type]


_ROLES: dict[type, str] = {
    **{kind: "transposed" for kind in common.TRANSPOSED.values()},
    **{kind: "conv" for kind in common.CONV.values()},
    nn.PixelShuffle: "shuffle",
    nn.Upsample: "resize",
    **{kind: "pad" for kind in blocks.PADS},
    **{kind: "pool" for kind in blocks.POOLS},
    **{kind: "norm" for kind in (*BATCH_NORMS.values(), *INSTANCE_NORMS.values())},
    nn.GroupNorm: "norm",
    ChannelLayerNorm: "norm",
    **{kind: "activation" for kind in _ACTIVATIONS},
}
"""Each native module's role in a head (:data:`upsample.head_patterns.ROLES`), by its exact type."""


def _names(rank: int) -> dict[str, str]:
    """Each role's module names for a head of ``rank`` spatial axes, for messages (torch's ``PixelShuffle`` is
    2-D only)."""
    names = {
        "transposed": common.TRANSPOSED[rank].__name__,
        "conv": common.CONV[rank].__name__,
        "shuffle": "PixelShuffle",
        "resize": "Upsample",
        "pad": "ReplicationPad/ConstantPad",
        "pool": "AvgPool",
        "norm": f"{BATCH_NORMS[rank].__name__}/GroupNorm/{INSTANCE_NORMS[rank].__name__}",
        "activation": f"of {sorted(t.__name__ for t in _ACTIVATIONS)}",
    }
    if rank != 2:
        del names["shuffle"]
    return names


def _rank(layers: list[head_patterns.Layer]) -> int:
    """The number of spatial axes of the first convolution of a flattened head (2 when it has none)."""
    kinds: dict[type, int] = {kind: rank for table in (common.TRANSPOSED, common.CONV) for rank, kind in table.items()}
    return next((kinds[type(module)] for *_, module in layers if type(module) in kinds), 2)


def _flat(sequential: nn.Sequential, where: str) -> list[head_patterns.Layer]:
    """Every module of ``sequential`` with its position and role, nested ``nn.Sequential`` flattened."""
    layers: list[head_patterns.Layer] = []
    for index, module in enumerate(sequential):
        position = f"{where}[{index}]"
        if isinstance(module, nn.Sequential):
            layers.extend(_flat(module, position))
            continue
        role = next((_ROLES[kind] for kind in type(module).__mro__ if kind in _ROLES), "other")  # weight norm's too
        layers.append((position, type(module).__name__, role, module))
    return layers


def _stage(kind: str, modules: list[nn.Module]) -> Any:
    """A stage's spec and weights (a blur at its end read into the spec), or a blur alone's :class:`~upsample.Blur`."""
    blur = None
    if len(modules) >= 2 and isinstance(modules[-1], blocks.POOLS):
        blur = blocks.native_blur(modules[-2], modules[-1])
        modules = modules[:-2]
    if kind == "blur":
        return blur
    first: Any = modules[0]
    read: Any = (
        transposed.from_native(first) if kind == "transposed" else conv_native.from_native(nn.Sequential(*modules))
    )
    spec, weights = read
    return spec if blur is None else dataclasses.replace(spec, blur=blur), weights


def from_native(sequential: nn.Sequential) -> tuple[HeadSpec, HeadWeights]:
    """Spec and canonical weights of an ``nn.Sequential`` of stages (``ConvTranspose1d/2d/3d``; ``Conv2d`` +
    ``PixelShuffle``; ``Upsample`` + ``Conv1d/2d/3d``; flat or as nested ``nn.Sequential``), each but the last
    followed by the same ``BatchNorm``/``GroupNorm``/``InstanceNorm`` (or none) and activation, the last by an optional
    activation: the PyTorch DCGAN generator's pattern and every head ``upsample.plan`` makes. ``build(spec,
    weights=...)`` then computes the same outputs, in train and eval mode. Anything else is refused, naming
    the module's position and type."""
    if not isinstance(sequential, nn.Sequential):
        raise TypeError(f"sequential must be a torch.nn.Sequential, got {type(sequential).__name__}")
    layers = _flat(sequential, "sequential")
    return head_patterns.read_head(
        layers,
        _names(_rank(layers)),
        "nn.Sequential",
        _stage,
        lambda position, module: _native_norm(head_patterns.top_index(position), module),
        _native_activation,
        "sequential",
    )
