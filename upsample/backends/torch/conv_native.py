"""Reading a torch user's modules as a sub-pixel or resize spec (``from_native``):
``nn.Sequential(Conv, PixelShuffle)``, ``nn.Sequential(Upsample, Conv)`` and a bare ``nn.Upsample`` (a resize
alone). The layers themselves are :mod:`upsample.backends.torch.conv`'s."""

from __future__ import annotations

from typing import Any

from torch import nn

from upsample import conv_geometry, geometry, resize_table
from upsample.backends.torch import common
from upsample.backends.torch.conv import LINEAR, Spec
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.weights import Weights

__all__ = ["from_native", "grouping", "resize_factor", "same_conv", "upsample_alone", "upsample_settings"]


def same_conv(conv: Any) -> tuple[Any, tuple[int, ...]]:
    """``conv`` and its kernel size if it is a stride-1 "same" ``nn.Conv1d/2d/3d`` as a spec has, else an error."""
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):  # Lazy* too
        raise TypeError(f"the convolution must be a torch.nn.Conv1d, Conv2d or Conv3d, got {type(conv).__name__}")
    kernel = tuple(int(k) for k in conv.kernel_size)
    pads = [conv_geometry.same_padding(geometry.extent(k, d)) for k, d in zip(kernel, conv.dilation, strict=True)]
    same = tuple(before for before, _ in pads)
    checks = {
        "stride": (tuple(conv.stride), (1,) * len(kernel)),
        "padding_mode": (conv.padding_mode, "zeros"),
    }
    for name, (value, needed) in checks.items():
        if value != needed:
            raise ValueError(f"conv.{name} must be {needed!r} to convert to a spec, got {value!r}")
    symmetric = all(before == after for before, after in pads)  # an odd extent
    if conv.padding != "same" and not (tuple(conv.padding) == same and symmetric):
        raise ValueError(
            f"conv.padding must be 'same' (or {same} for an odd extent) to convert to a spec, got {conv.padding!r}"
        )
    return conv, kernel


def upsample_settings(upsample: nn.Upsample, rank: int, where: str = "") -> dict[str, Any]:
    """The :class:`~upsample.ResizeSpec` arguments of an ``nn.Upsample`` on ``rank`` axes: its factor or size
    (:func:`resize_factor`) and the settings of its mode (:data:`upsample.resize_table.TORCH`)."""
    row = resize_table.torch_row(upsample.mode, upsample.align_corners, rank)
    if row is None:
        modes = sorted({str(dict(r.options)["mode"]) for r in resize_table.TORCH if rank in r.ranks})
        raise ValueError(
            f"Upsample mode must be one of {modes} ('linear' as {LINEAR[rank]!r}){where}, got {upsample!r}"
        )
    factor = resize_factor(upsample, rank, row)
    integer = "scale" in factor and all(f.is_integer() for f in factor["scale"])
    return {**factor, **resize_table.spec_settings(row.interpolation, integer)}


def upsample_alone(
    upsample: nn.Upsample, in_channels: int | None, spatial_dims: int | None = None
) -> tuple[ResizeSpec, Weights]:
    """The spec of a bare ``nn.Upsample``, a resize with no convolution (``kernel_size=None``), and its (absent)
    weights. torch's module takes any channel count, a spec one: ``in_channels`` says which. The number of spatial
    axes is ``spatial_dims`` where given, else that of a tuple ``size`` or ``scale_factor``, else its mode's (``linear``
    1, ``bilinear``/``bicubic`` 2, ``trilinear`` 3), else 2, as a spec's."""
    if in_channels is None:
        raise TypeError(
            f"from_native(nn.Upsample(...), in_channels=C): the module takes any channel count and a spec needs one; "
            f"got {upsample!r} without in_channels"
        )
    given = upsample.size if upsample.size is not None else upsample.scale_factor
    by_mode = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
    rank = spatial_dims or (len(given) if isinstance(given, tuple) else by_mode.get(upsample.mode, 2))
    spec = ResizeSpec(in_channels, kernel_size=None, spatial_dims=rank, **upsample_settings(upsample, rank))
    return spec, Weights(None)


def resize_factor(upsample: nn.Upsample, rank: int, row: resize_table.NativeResize) -> dict[str, Any]:
    """``{"scale": ...}`` or ``{"size": ...}``: the :class:`~upsample.ResizeSpec` argument of an ``nn.Upsample`` on
    ``rank`` axes computing ``row``. A ``size``, an integer ``scale_factor``, and a non-integer one in the modes that
    compute ONNX's resize with it (``bicubic``; ``align_corners=True``, whose coordinates do not read the factor)
    are specs; the rest is refused (measured, torch 2.13: ``nearest``, ``nearest-exact`` and ``bilinear`` copy an
    axis whose length the factor leaves unchanged, and ``nearest`` rounds its coordinates in float32;
    ``recompute_scale_factor=True`` maps with ``out / in`` on ``floor(in * scale_factor)`` pixels)."""
    if upsample.size is not None:
        return {"size": upsample.size}
    factor = upsample.scale_factor
    factors = tuple(float(f) for f in (factor if isinstance(factor, tuple) else (factor,) * rank))  # type: ignore[arg-type]
    setting = row.interpolation
    if not all(f.is_integer() for f in factors) and (
        upsample.recompute_scale_factor or (setting.method != "cubic" and setting.coordinates != "align_corners")
    ):
        raise ValueError(
            f"Upsample with a non-integer scale_factor in mode {upsample.mode!r} (recompute_scale_factor="
            f"{upsample.recompute_scale_factor}) is not ONNX's resize by that factor: torch copies an axis whose "
            f"length it leaves unchanged, rounds nearest coordinates in float32, or with recompute_scale_factor=True "
            f"maps coordinates by output / input; give size= (exact in every mode) or an integer factor, got "
            f"{upsample!r}"
        )
    return {"scale": factors}


def grouping(conv: Any) -> dict[str, Any]:
    """A spec's ``groups`` and ``dilation`` arguments from a torch convolution's."""
    return {"groups": conv.groups, "dilation": tuple(conv.dilation)}


def from_native(module: nn.Sequential) -> tuple[Spec, Weights]:
    """The spec and canonical weights of ``nn.Sequential(nn.Conv2d, nn.PixelShuffle)`` (sub-pixel) or
    ``nn.Sequential(nn.Upsample(scale_factor=r or size=n, mode=..., align_corners=...), nn.Conv1d | Conv2d | Conv3d)``
    (resize; every mode of :data:`upsample.resize_table.TORCH`: ``nearest``, ``nearest-exact``, ``(bi/tri)linear``
    and ``bicubic`` with ``align_corners`` either way; any factor, :func:`resize_factor`).

    Convolutions must be stride 1 with "same" padding (groups and dilation are kept); anything else has no spec
    equivalent and is refused.
    """
    if not isinstance(module, nn.Sequential) or len(module) != 2:
        raise TypeError(
            "module must be nn.Sequential(Conv2d, PixelShuffle) or nn.Sequential(Upsample, Conv2d), got "
            f"{type(module).__name__}{f' of {len(module)} modules' if isinstance(module, nn.Sequential) else ''}"
        )
    first, second = module[0], module[1]
    spec: Spec
    if isinstance(second, nn.PixelShuffle):
        conv, kernel = same_conv(first)
        shuffle = second.upscale_factor
        if len(kernel) != 2:
            raise TypeError(f"nn.PixelShuffle is 2-D; the convolution before it is {type(first).__name__}")
        channels = conv.out_channels // shuffle**2
        spec = SubpixelSpec(
            conv.in_channels, channels, shuffle, kernel, use_bias=conv.bias is not None, **grouping(conv)
        )
    elif isinstance(first, nn.Upsample):
        conv, kernel = same_conv(second)
        settings = upsample_settings(first, len(kernel), f" before a {type(conv).__name__}")
        bias = conv.bias is not None
        spec = ResizeSpec(
            conv.in_channels, conv.out_channels, kernel_size=kernel, use_bias=bias, **grouping(conv), **settings
        )
    else:
        raise TypeError(
            f"module must be nn.Sequential(Conv2d, PixelShuffle) or nn.Sequential(Upsample, Conv2d), got "
            f"({type(first).__name__}, {type(second).__name__})"
        )
    weights = Weights(
        kernel=common.to_numpy(common.native_weight(conv)).transpose(common.kernel_axes(len(kernel), transposed=False)),
        bias=None if conv.bias is None else common.to_numpy(conv.bias),
    )
    return spec, weights.check(spec)  # type: ignore[arg-type]
