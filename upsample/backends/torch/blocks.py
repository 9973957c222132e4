"""The field's torch upsampling blocks, one table (:data:`BLOCKS`): what :func:`from_native` reads and
:func:`upsample.find` looks for, each row a block, the test that recognises it and the reader that makes it a spec.

MONAI's and diffusers' blocks are recognised by their class and package names, so neither library is imported
here; fastai's ``PixelShuffle_ICNR`` is read by its structure (an ``nn.Sequential`` of conv, ``PixelShuffle``,
``ReplicationPad2d``, ``AvgPool2d``: :mod:`upsample.head_patterns`). Weight-normalised and spectral-normalised
convolutions are read by the weight they compute with (:func:`upsample.backends.torch.common.native_weight`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from upsample.backends import own_layer
from upsample.backends.torch import common, conv_native, transposed
from upsample.blur import Blur, fir_upsampling
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.messages import shown
from upsample.spec import UpsampleSpec
from upsample.weights import Weights

__all__ = ["BLOCKS", "PADS", "POOLS", "Block", "from_native", "native_blur"]

PADS = (
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
)  # fmt: skip
"""The pads a blur starts with."""
POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
"""The average pools (at stride 1) a blur ends with."""


def native_blur(pad: nn.Module, pool: nn.Module) -> Blur:
    """The :class:`~upsample.Blur` a pad then an average pool at stride 1 compute: fastai's ``ReplicationPad2d((1, 0,
    1, 0))`` + ``AvgPool2d(2, stride=1)``, MONAI's ``ConstantPad{1,2,3}d`` of zeros + ``AvgPool{1,2,3}d``."""
    rank = POOLS.index(type(pool)) + 1
    per_axis = lambda value: tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank  # noqa: E731
    kernel, stride, padding = per_axis(pool.kernel_size), per_axis(pool.stride), per_axis(pool.padding)
    if set(stride) != {1} or set(padding) != {0} or pool.ceil_mode or getattr(pool, "divisor_override", None):
        raise ValueError(
            f"a blur's average pool must have stride 1, padding 0, ceil_mode=False and no divisor_override, got "
            f"{pool!r}"
        )
    if not isinstance(pad, PADS) or len(pad.padding) != 2 * rank:
        raise TypeError(f"a blur's pad must be a {rank}-D ReplicationPad, ConstantPad or ZeroPad, got {pad!r}")
    if not isinstance(pad, (nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d)) and pad.value != 0:
        raise ValueError(f"a blur pads with zeros or copies of the edge, got {pad!r}")
    pads = [(pad.padding[2 * (rank - 1 - a)], pad.padding[2 * (rank - 1 - a) + 1]) for a in range(rank)]  # last first
    mode = "replicate" if isinstance(pad, (nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d)) else "zeros"
    if any(before + after != k - 1 for (before, after), k in zip(pads, kernel, strict=True)):
        raise ValueError(f"{pad!r} then {pool!r} changes the size: a blur pads kernel - 1 rows per axis")
    return Blur([[1 / k] * k for k in kernel], pads, mode)


def _conv_weights(conv: Any, rank: int, transposed_conv: bool = False) -> Weights:
    """A torch convolution's weight (as it computes with it) and bias in the canonical layout."""
    kernel = common.to_numpy(common.native_weight(conv)).transpose(common.kernel_axes(rank, transposed_conv))
    return Weights(kernel, None if conv.bias is None else common.to_numpy(conv.bias))


# --- MONAI (monai.networks.blocks; measured with monai 1.6.1) -----------------------------------------------------


def _monai_subpixel(block: Any, in_channels: int | None, spatial_dims: int | None) -> tuple[SubpixelSpec, Weights]:
    """``SubpixelUpsample``: its ``conv_block`` (a stride-1 "same" convolution), MONAI's N-d pixel shuffle (the
    canonical order) and, with ``apply_pad_pool``, its zero pad + average pool as a blur."""
    rank, scale = block.dimensions, block.scale_factor
    if isinstance(block.conv_block, nn.Identity):
        raise ValueError("SubpixelUpsample(conv_block=None) is a pixel shuffle alone, which has no spec; give a conv")
    conv, kernel = conv_native.same_conv(block.conv_block)
    blur = None if isinstance(block.pad_pool, nn.Identity) else native_blur(*block.pad_pool)
    channels, remainder = divmod(conv.out_channels, scale**rank)
    if remainder:
        raise ValueError(f"SubpixelUpsample's conv has {conv.out_channels} channels, not a multiple of {scale}**{rank}")
    spec = SubpixelSpec(
        conv.in_channels, channels, (scale,) * rank, kernel, use_bias=conv.bias is not None, blur=blur,
        **conv_native.grouping(conv),
    )  # fmt: skip
    return spec, _conv_weights(conv, rank).check(spec)  # type: ignore[arg-type]


def _monai_upsample(block: Any, in_channels: int | None, spatial_dims: int | None) -> tuple[Any, Weights]:
    """``UpSample`` in every mode: ``deconv``/``deconvgroup`` (a transposed convolution), ``pixelshuffle`` (a
    ``SubpixelUpsample``) and ``nontrainable`` (``nn.Upsample`` after a 1x1 ``preconv``, which commutes with the
    resize, or before a ``postconv``; alone, given ``in_channels``)."""
    children = dict(block.named_children())
    for name in ("deconv", "deconvgroup"):
        if name in children:
            return transposed.from_native(children[name])
    if "pixelshuffle" in children:
        return _monai_subpixel(children["pixelshuffle"], in_channels, spatial_dims)
    upsample = children["upsample_non_trainable"]
    pre, post = children.get("preconv"), children.get("postconv")
    if pre is not None and post is not None:
        raise ValueError("UpSample(mode='nontrainable') with both pre_conv and post_conv: convert its parts one by one")
    if post is not None:
        return conv_native.from_native(nn.Sequential(upsample, post))
    if pre is None:
        return conv_native.upsample_alone(upsample, in_channels, spatial_dims)
    conv, kernel = conv_native.same_conv(pre)
    if set(kernel) != {1} or conv.groups != 1:
        raise ValueError(f"UpSample's pre_conv must be a 1x1 convolution (which commutes with the resize), got {pre!r}")
    rank = len(kernel)
    settings = conv_native.upsample_settings(upsample, rank, " in UpSample(mode='nontrainable')")
    bias = conv.bias is not None
    spec = ResizeSpec(conv.in_channels, conv.out_channels, kernel_size=1, use_bias=bias, spatial_dims=rank, **settings)
    return spec, _conv_weights(conv, rank).check(spec)  # type: ignore[arg-type]


# --- diffusers (diffusers.models.upsampling; measured with diffusers 0.42.1) ---------------------------------------


def _diffusers_upsample(block: Any, in_channels: int | None, spatial_dims: int | None) -> tuple[Any, Weights]:
    """``Upsample1D``/``Upsample2D``: nearest by 2 then a convolution, a transposed convolution, the resize alone,
    or (``interpolate=False``) the convolution alone, as a resize by 1. A norm before the upsampler has no spec."""
    rank = 1 if type(block).__name__ == "Upsample1D" else 2
    if getattr(block, "norm", None) is not None:
        raise ValueError(f"{type(block).__name__}(norm_type=...) normalises before upsampling, which has no spec")
    conv = getattr(block, "conv", None) or getattr(block, "Conv2d_0", None)
    if block.use_conv_transpose:
        return transposed.from_native(conv)  # type: ignore[arg-type]
    scale = 2 if getattr(block, "interpolate", True) else 1
    if conv is None:
        if scale == 1:
            raise ValueError(f"{type(block).__name__}(interpolate=False) without a conv is the identity")
        return ResizeSpec(block.channels, scale=(2,) * rank, kernel_size=None), Weights(None)
    conv, kernel = conv_native.same_conv(conv)
    spec = ResizeSpec(
        conv.in_channels, conv.out_channels, (scale,) * rank, "nearest", kernel, use_bias=conv.bias is not None,
        **conv_native.grouping(conv),
    )  # fmt: skip
    return spec, _conv_weights(conv, rank).check(spec)  # type: ignore[arg-type]


def _diffusers_fir(block: Any, in_channels: int | None, spatial_dims: int | None) -> tuple[UpsampleSpec, Weights]:
    """``FirUpsample2D`` (:func:`upsample.blur.fir_upsampling`, factor 2): zero insertion and the FIR, a depthwise
    transposed convolution of the FIR; or with its conv, a transposed convolution of the conv's flipped kernel, the
    FIR, then the bias: one transposed convolution. The FIR's structure is not kept: the spec trains the whole
    kernel."""
    if np.ndim(block.fir_kernel) != 1:
        raise ValueError(f"FirUpsample2D's fir_kernel must be 1-D taps, got {shown(block.fir_kernel)}")
    if not block.use_conv:
        channels = block.out_channels if in_channels is None else in_channels
        fir, crop = fir_upsampling(block.fir_kernel, 2)
        k = len(fir)
        spec = UpsampleSpec(channels, channels, k, 2, padding=(crop, crop), groups=channels, use_bias=False)
        kernel = np.broadcast_to(fir, (k, k, channels, 1)).astype(np.float32)
        return spec, Weights(kernel).check(spec)
    conv = block.Conv2d_0
    weight = common.to_numpy(common.native_weight(conv))  # Conv2d's (out, in, kh, kw)
    flipped = np.flip(weight, (2, 3)).transpose(2, 3, 1, 0)  # as the canonical transposed kernel (kh, kw, in, out)
    full, crop = fir_upsampling(block.fir_kernel, 2, flipped)
    spec = UpsampleSpec(conv.in_channels, conv.out_channels, len(full), 2, padding=(crop, crop))
    bias = None if conv.bias is None else common.to_numpy(conv.bias)
    return spec, Weights(full.astype(np.float32), bias).check(spec)  # type: ignore[arg-type]


# --- the table ------------------------------------------------------------------------------------------------


class Block(NamedTuple):
    """One kind of module :func:`from_native` reads."""

    name: str
    """What users call it, for messages and docs."""
    matches: Callable[[Any], bool]
    read: Callable[[Any, int | None, int | None], tuple[Any, Any]]
    """``(module, in_channels, spatial_dims) -> (spec, weights)``, a head's where the module is several stages; the
    last two say what the module alone may not (a bare resize's channels and rank)."""


def _library(module: Any, library: str, *names: str) -> bool:
    """Whether ``module`` is one of the classes ``names`` of the package ``library`` (not imported here)."""
    kind = type(module)
    return kind.__module__.split(".")[0] == library and any(c.__name__ in names for c in kind.__mro__)


def _sequential(module: nn.Sequential, in_channels: int | None, spatial_dims: int | None) -> tuple[Any, Any]:
    """A two-module kind pattern, else a head; a head of one stage with nothing after it is that stage."""
    from upsample.backends.torch import head  # imported on use: it imports this package

    kinds = (*common.TRANSPOSED.values(), nn.Sequential, *PADS, *POOLS)
    if len(module) == 2 and not any(isinstance(child, kinds) for child in module):
        return conv_native.from_native(module)
    spec, weights = head.from_native(module)
    if len(spec.stages) == 1 and spec.final_activation is None:
        return spec.stages[0], weights.stages[0]
    return spec, weights


def _ours(module: Any, in_channels: int | None, spatial_dims: int | None) -> tuple[Any, Any]:
    from upsample.backends import torch as backend  # imported on use: it imports this module

    return module.spec, backend.get_weights(module)


BLOCKS: tuple[Block, ...] = (
    Block(
        "upsample's own layers and heads",
        lambda m: isinstance(m, nn.Module) and own_layer(m),
        _ours,
    ),
    Block(
        "nn.ConvTranspose1d/2d/3d (weight- or spectral-normalised too)",
        lambda m: isinstance(m, tuple(common.TRANSPOSED.values())),
        lambda m, c, r: transposed.from_native(m),
    ),
    Block("nn.Upsample alone (with in_channels=)", lambda m: isinstance(m, nn.Upsample), conv_native.upsample_alone),
    Block("MONAI UpSample (every mode)", lambda m: _library(m, "monai", "UpSample"), _monai_upsample),
    Block("MONAI SubpixelUpsample", lambda m: _library(m, "monai", "SubpixelUpsample"), _monai_subpixel),
    Block(
        "diffusers Upsample1D/Upsample2D",
        lambda m: _library(m, "diffusers", "Upsample1D", "Upsample2D"),
        _diffusers_upsample,
    ),
    Block("diffusers FirUpsample2D", lambda m: _library(m, "diffusers", "FirUpsample2D"), _diffusers_fir),
    Block(
        "nn.Sequential: Conv + PixelShuffle, Upsample + Conv, or a head of such stages (fastai's PixelShuffle_ICNR, "
        "DCGAN's generator)",
        lambda m: isinstance(m, nn.Sequential),
        _sequential,
    ),
)
"""Every block :func:`from_native` reads, in the order it tries them."""


def from_native(module: Any, in_channels: int | None = None, spatial_dims: int | None = None) -> tuple[Any, Any]:
    """The spec and canonical weights of any block of :data:`BLOCKS` (a ``HeadSpec`` and ``HeadWeights`` where it is
    several stages); what no row reads is refused with the list of what is read."""
    for block in BLOCKS:
        if block.matches(module):
            return block.read(module, in_channels, spatial_dims)
    names = "; ".join(block.name for block in BLOCKS)
    raise TypeError(f"module must be one of: {names}; got {type(module).__name__}")
