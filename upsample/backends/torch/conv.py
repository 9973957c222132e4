"""PyTorch layers for the sub-pixel and resize kinds: a stride-1 "same" ``nn.Conv2d`` named
``conv`` plus ``nn.PixelShuffle`` (:class:`Subpixel`) or ``F.interpolate`` (:class:`ResizeConv`), NCHW.

torch's ``PixelShuffle`` reads the canonical CRD order, so weights convert without a permutation:
``conv.weight = kernel.transpose(3, 2, 0, 1)`` (docs/choosing-an-upsampler.md). A non-square scale, which
``PixelShuffle`` does not take, is the same CRD reshape written out. ``F.interpolate`` with
``align_corners=False`` is the canonical half-pixel bilinear resize. Odd kernels use ``Conv2d``'s own
symmetric padding, even ones ``padding="same"`` (``(k - 1) // 2`` before, the rest after, as the spec).
A projection residual is a bias-free 1x1 ``nn.Conv2d`` named ``skip``, as in the transposed layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from upsample import limits
from upsample.backends.torch import common
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import require_spec
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "build", "from_native", "get_weights", "set_weights"]

Spec = SubpixelSpec | ResizeSpec


class _ConvKind(nn.Module):
    """What both kinds share: the stride-1 "same" ``conv``, the optional ``skip``, checks and residual."""

    def __init__(
        self,
        spec: Spec,
        *,
        weights: Weights | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        fast_path: bool = True,
    ) -> None:
        super().__init__()
        limits.check_weights(require_spec(spec, SubpixelSpec if isinstance(self, Subpixel) else ResizeSpec))
        self.spec = spec
        self.fast_path = bool(fast_path)
        (top, bottom), (left, right) = spec.padding
        padding: tuple[int, int] | str = (top, left) if (top, left) == (bottom, right) else "same"
        self.conv = nn.Conv2d(
            spec.in_channels,
            spec.conv_channels,
            spec.kernel_size,
            padding=padding,
            bias=spec.use_bias,
            device=device,
            dtype=dtype,
        )
        self.skip = (
            nn.Conv2d(spec.in_channels, spec.out_channels, 1, bias=False, device=device, dtype=dtype)
            if spec.residual == "projection"
            else None
        )
        if weights is not None:
            set_weights(self, weights)

    def extra_repr(self) -> str:
        return f"spec={self.spec}, fast_path={self.fast_path}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H * r_h, W * r_w)``; an unbatched ``(C_in, H, W)`` too."""
        return common.run(self, x, self._upsample)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Subpixel(_ConvKind):
    """Sub-pixel convolution exactly as a :class:`~upsample.SubpixelSpec` describes, on NCHW tensors.

    Args as :class:`upsample.backends.torch.Upsample`; ``fast_path`` computes a 1x1 input as one matmul
    with the kernel's centre tap (the only one that reads it), then the shuffle.
    """

    def __init__(self, spec: SubpixelSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        scale_h, scale_w = spec.scale
        self.shuffle = nn.PixelShuffle(scale_h) if scale_h == scale_w > 1 else None

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        if common.takes_matmul_path(self, height, width):
            (top, _), (left, _) = self.spec.padding
            z = F.linear(x.reshape(batch, -1), self.conv.weight[:, :, top, left], self.conv.bias)
            z = z.view(batch, -1, 1, 1)
        else:
            z = self.conv(x)
        if self.shuffle is not None:
            return self.shuffle(z)
        scale_h, scale_w = self.spec.scale
        if (scale_h, scale_w) == (1, 1):
            return z
        channels = self.spec.out_channels  # the CRD reshape PixelShuffle does, for r_h != r_w
        z = z.view(batch, channels, scale_h, scale_w, height, width).permute(0, 1, 4, 2, 5, 3)
        return z.reshape(batch, channels, height * scale_h, width * scale_w)


class ResizeConv(_ConvKind):
    """Resize-convolution exactly as a :class:`~upsample.ResizeSpec` describes, on NCHW tensors.

    Args as :class:`upsample.backends.torch.Upsample` (``fast_path`` is kept for a uniform interface:
    a resize-convolution has no cheaper exact form here).
    """

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        if spec.scale != (1, 1):
            size = (x.shape[2] * spec.scale[0], x.shape[3] * spec.scale[1])
            if spec.method == "nearest":  # type: ignore[union-attr]
                x = F.interpolate(x, size=size, mode="nearest")
            else:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(x)


Layer = _ConvKind


def build(spec: Spec, *, weights: Weights | None = None, **kwargs: Any) -> Layer:
    """The layer for ``spec`` (``Subpixel`` or ``ResizeConv``): the registry's entry point."""
    if isinstance(spec, SubpixelSpec):
        return Subpixel(spec, weights=weights, **kwargs)
    return ResizeConv(spec, weights=weights, **kwargs)


def _require_layer(layer: Any) -> Layer:
    if not isinstance(layer, _ConvKind):
        raise TypeError(f"layer must be an upsample.backends.torch Subpixel or ResizeConv, got {type(layer).__name__}")
    return layer


def get_weights(layer: Layer) -> Weights:
    """The layer's parameters, canonical: HWIO kernel ``(kh, kw, C_in, C_conv)``, skip ``(C_in, C_out)``."""
    return common.read_weights(_require_layer(layer), (2, 3, 1, 0))


def set_weights(layer: Layer, weights: Weights) -> None:
    """Copy canonical ``weights`` into the layer, keeping each parameter's device and dtype."""
    common.write_weights(_require_layer(layer), weights, (2, 3, 1, 0))


def _same_conv(conv: Any) -> tuple[nn.Conv2d, tuple[int, int]]:
    """``conv`` and its kernel size if it is a stride-1 "same" ``nn.Conv2d`` as a spec has, else an error."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"the convolution must be a torch.nn.Conv2d, got {type(conv).__name__}")
    kernel = (int(conv.kernel_size[0]), int(conv.kernel_size[1]))
    same = tuple((k - 1) // 2 for k in kernel)
    checks = {
        "stride": (tuple(conv.stride), (1, 1)),
        "dilation": (tuple(conv.dilation), (1, 1)),
        "groups": (conv.groups, 1),
        "padding_mode": (conv.padding_mode, "zeros"),
    }
    for name, (value, needed) in checks.items():
        if value != needed:
            raise ValueError(f"conv.{name} must be {needed!r} to convert to a spec, got {value!r}")
    if conv.padding != "same" and not (tuple(conv.padding) == same and all(k % 2 for k in kernel)):
        raise ValueError(
            f"conv.padding must be 'same' (or {same} for an odd kernel) to convert to a spec, got {conv.padding!r}"
        )
    return conv, kernel


def from_native(module: nn.Sequential) -> tuple[Spec, Weights]:
    """The spec and canonical weights of ``nn.Sequential(nn.Conv2d, nn.PixelShuffle)`` (sub-pixel) or
    ``nn.Sequential(nn.Upsample(scale_factor=r, mode="nearest" | "bilinear"), nn.Conv2d)`` (resize).

    Convolutions must be stride 1 with "same" padding; anything else has no spec equivalent and is refused.
    """
    if not isinstance(module, nn.Sequential) or len(module) != 2:
        raise TypeError(
            "module must be nn.Sequential(Conv2d, PixelShuffle) or nn.Sequential(Upsample, Conv2d), got "
            f"{type(module).__name__}{f' of {len(module)} modules' if isinstance(module, nn.Sequential) else ''}"
        )
    first, second = module[0], module[1]
    spec: Spec
    if isinstance(second, nn.PixelShuffle):
        conv, kernel = _same_conv(first)
        shuffle = second.upscale_factor
        spec = SubpixelSpec(
            conv.in_channels, conv.out_channels // shuffle**2, shuffle, kernel, use_bias=conv.bias is not None
        )
    elif isinstance(first, nn.Upsample):
        conv, kernel = _same_conv(second)
        factor = first.scale_factor
        factors = factor if isinstance(factor, tuple) else (factor, factor)
        if first.size is not None or factors[0] is None or any(float(f) != int(f) for f in factors):  # type: ignore[arg-type]
            raise ValueError(f"Upsample must have an integer scale_factor and no size, got {first!r}")
        if first.mode not in ("nearest", "bilinear") or first.align_corners:
            raise ValueError(f"Upsample mode must be 'nearest' or 'bilinear' without align_corners, got {first!r}")
        scale = (int(factors[0]), int(factors[1]))  # type: ignore[arg-type]
        spec = ResizeSpec(
            conv.in_channels, conv.out_channels, scale, first.mode, kernel, use_bias=conv.bias is not None
        )
    else:
        raise TypeError(
            f"module must be nn.Sequential(Conv2d, PixelShuffle) or nn.Sequential(Upsample, Conv2d), got "
            f"({type(first).__name__}, {type(second).__name__})"
        )
    weights = Weights(
        kernel=common.to_numpy(conv.weight).transpose(2, 3, 1, 0),
        bias=None if conv.bias is None else common.to_numpy(conv.bias),
    )
    return spec, weights.check(spec)  # type: ignore[arg-type]
