"""PyTorch layers for the sub-pixel and resize kinds: a stride-1 "same" ``nn.Conv1d/2d/3d`` named
``conv`` plus a pixel shuffle (:class:`Subpixel`) or ``F.interpolate`` (:class:`ResizeConv`), on
``(N, C, *spatial)`` tensors.

torch's ``PixelShuffle`` reads the canonical CRD order, so weights convert without a permutation:
``conv.weight = kernel.transpose(3, 2, 0, 1)`` in 2-D (docs/choosing-an-upsampler.md). A non-square or
non-2-D scale, which ``PixelShuffle`` does not take, is the same CRD reshape written out (MONAI's N-d
``pixelshuffle``). The resize is ``F.interpolate`` where one of its modes computes the spec's (ONNX ``Resize``)
definition (:data:`upsample.resize_table.TORCH`), else gathers and weighted sums (:func:`upsample.resize_ops.resize`).
Odd kernels use the convolution's own symmetric padding, even ones ``padding="same"`` (``(k - 1) // 2`` before, the
rest after, as the spec). A projection residual is a bias-free 1x1 convolution named ``skip``, as in the transposed
layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from upsample import limits, resize_ops, resize_table
from upsample.backends.torch import common
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import require_spec
from upsample.spec_kinds import dense_taps
from upsample.weights import Weights

__all__ = ["ResizeConv", "Subpixel", "build", "get_weights", "set_weights"]

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
        rank = spec.spatial_dims
        self.conv: Any = None if spec.kernel_size is None else _conv(spec, device, dtype)  # None: a resize alone
        self.skip = (
            common.CONV[rank](spec.in_channels, spec.out_channels, 1, bias=False, device=device, dtype=dtype)
            if spec.residual == "projection"
            else None
        )
        if weights is not None:
            set_weights(self, weights)

    def extra_repr(self) -> str:
        return f"spec={self.spec}, fast_path={self.fast_path}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial)`` -> ``(B, C_out, *(spatial * scale))`` (``(B, C_in, H, W)`` in 2-D); unbatched
        ``(C_in, *spatial)`` too."""
        return common.run(self, x, self._upsample)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _conv(spec: Spec, device: Any, dtype: Any) -> nn.Module:
    """The spec's stride-1 "same" ``nn.Conv1d/2d/3d``."""
    before, after = (tuple(pad[i] for pad in spec.padding) for i in (0, 1))
    padding: tuple[int, ...] | str = before if before == after else "same"
    return common.CONV[spec.spatial_dims](
        spec.in_channels,
        spec.conv_channels,
        spec.kernel_size,
        padding=padding,
        dilation=spec.dilation,
        groups=spec.groups,
        bias=spec.use_bias,
        device=device,
        dtype=dtype,
    )


class Subpixel(_ConvKind):
    """Sub-pixel convolution exactly as a :class:`~upsample.SubpixelSpec` describes, on NCHW tensors.

    Args as :class:`upsample.backends.torch.Upsample`; ``fast_path`` computes a 1-pixel input as one matmul
    with the kernel's centre tap (the only one that reads it; ungrouped, undilated kernels), then the shuffle.
    """

    def __init__(self, spec: SubpixelSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        scale = spec.scale
        square = spec.spatial_dims == 2 and scale[0] == scale[1] > 1
        self.shuffle = nn.PixelShuffle(scale[0]) if square else None

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        batch, size = x.shape[0], tuple(x.shape[2:])
        rank = self.spec.spatial_dims
        if dense_taps(self.spec) and common.takes_matmul_path(self, size):
            centre = tuple(before for before, _ in self.spec.padding)
            tap: tuple[slice | int, ...] = (slice(None), slice(None), *centre)
            z = F.linear(x.reshape(batch, -1), self.conv.weight[tap], self.conv.bias)
            z = z.view(batch, -1, *(1,) * rank)
        else:
            z = self.conv(x)
        if self.shuffle is not None:
            return self.shuffle(z)
        scale = self.spec.scale
        if all(r == 1 for r in scale):
            return z
        # the CRD reshape PixelShuffle does: (B, C, *r, *size) -> (B, C, size_1, r_1, size_2, r_2, ...)
        channels = self.spec.out_channels
        order = (0, 1, *(i for a in range(rank) for i in (2 + rank + a, 2 + a)))
        z = z.reshape(batch, channels, *scale, *size).permute(order)
        return z.reshape(batch, channels, *(n * r for n, r in zip(size, scale, strict=True)))


class ResizeConv(_ConvKind):
    """Resize-convolution exactly as a :class:`~upsample.ResizeSpec` describes, on NCHW tensors.

    Args as :class:`upsample.backends.torch.Upsample` (``fast_path`` is kept for a uniform interface:
    a resize-convolution has no cheaper exact form here).
    """

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        resized = resize(x, self.spec)  # type: ignore[arg-type]
        return resized if self.conv is None else self.conv(resized)


def resize(x: torch.Tensor, spec: ResizeSpec) -> torch.Tensor:
    """``(B, C, *spatial)`` resized as ``spec`` says: ``F.interpolate`` where it is exact, else gathers."""
    rank, scale = spec.spatial_dims, spec.integer_scale
    if scale == (1,) * rank:
        return x
    native = resize_table.native_resize(resize_table.TORCH, spec)
    if native is not None:  # an integer scale: sizes from x.shape stay symbolic under tracing and torch.compile
        out = tuple(n * r for n, r in zip(x.shape[2:], scale, strict=True))  # type: ignore[arg-type]
        return F.interpolate(x, size=out, **interpolate_options(native, rank))  # type: ignore[arg-type]
    return resize_ops.resize_as(spec, x, range(2, 2 + rank), tuple(int(n) for n in x.shape[2:]), _take, _constant)


def interpolate_options(row: resize_table.NativeResize, rank: int) -> dict[str, Any]:
    """``F.interpolate``'s keyword arguments for a :data:`upsample.resize_table.TORCH` row on ``rank`` axes."""
    options = dict(row.options)
    if options["mode"] == "linear":
        options["mode"] = LINEAR[rank]
    return options


def _take(x: torch.Tensor, indices: Any, axis: int) -> torch.Tensor:
    return x.index_select(axis, torch.as_tensor(indices, dtype=torch.long, device=x.device))


def _constant(array: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(array, dtype=x.dtype, device=x.device)


Layer = _ConvKind
LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}
"""``F.interpolate``'s name for the canonical (multi)linear resize per number of spatial axes."""


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
    """The layer's parameters, canonical: kernel ``(*k, C_in, C_conv)``, skip ``(C_in, C_out)``."""
    return common.read_weights(_require_layer(layer), transposed=False)


def set_weights(layer: Layer, weights: Weights) -> None:
    """Copy canonical ``weights`` into the layer, keeping each parameter's device and dtype."""
    common.write_weights(_require_layer(layer), weights, transposed=False)
