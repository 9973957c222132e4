"""Reading a Flax user's layers as a sub-pixel or resize spec (``from_native``): a ``Conv`` with the shuffle or
``jax.image.resize`` around it. The layers themselves are :mod:`upsample.backends.flax.conv`'s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import numpy as np
from flax import nnx
from flax.linen.linear import canonicalize_padding

from upsample import conv_geometry, geometry, resize_table
from upsample.backends.flax import common
from upsample.backends.flax.conv import Spec
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.messages import shown
from upsample.weights import Weights

__all__ = ["from_native"]


def _same(conv: nn.Conv | nnx.Conv, kernel_size: tuple[int, ...]) -> None:
    """Refuse a ``Conv`` that is not a stride-1 "same" convolution as a spec has (naming the argument)."""
    ones = lambda value: value is None or all(v == 1 for v in (value if isinstance(value, Sequence) else [value]))  # noqa: E731
    refused = {
        "strides": not ones(conv.strides),
        "input_dilation": not ones(conv.input_dilation),
        "mask": conv.mask is not None,
    }
    for name, bad in refused.items():
        if bad:
            raise ValueError(f"conv.{name} must be the default to convert to a spec, got {shown(getattr(conv, name))}")
    padding = canonicalize_padding(conv.padding, len(kernel_size))
    dilation = common.per_axis(conv.kernel_dilation, len(kernel_size))
    same = [conv_geometry.same_padding(geometry.extent(k, d)) for k, d in zip(kernel_size, dilation, strict=True)]
    if padding != "SAME" and [tuple(axis) for axis in padding] != same:
        raise ValueError(f"conv.padding must be 'SAME' (or {same}) to convert to a spec, got {shown(conv.padding)}")


def from_native(
    conv: nn.Conv | nnx.Conv,
    params: Any = None,
    *,
    scale: int | tuple[int, ...] | None = None,
    method: str | None = None,
    order: str = "CRD",
    size: int | tuple[int, ...] | None = None,
) -> tuple[Spec, Weights]:
    """The spec and canonical weights of a Flax ``Conv`` (linen: bound, or with ``params``; or NNX) with
    ``padding="SAME"``, followed by a pixel shuffle by ``scale`` that reads ``order`` (``method=None``; JAX
    has no such op, so say which reshape your code does: ``"CRD"`` is einops ``"b h w (c i j) -> b (h i) (w j) c"``,
    ``"DCR"`` is ``"(i j c)"``), or preceded by ``jax.image.resize`` by ``scale`` with ``method`` (its own names:
    ``"nearest"``, ``"linear"``/``"bilinear"``, ``"cubic"``/``"bicubic"``; :data:`upsample.resize_table.JAX`) by an
    integer ``scale`` or to the ``size`` of the shape you pass it (it maps coordinates by ``size / input``, so a
    non-integer factor is a ``size``; it antialiases when shrinking, which no spec does)."""
    if not isinstance(conv, (nn.Conv, nnx.Conv)):
        raise TypeError(f"conv must be a flax.linen.Conv or flax.nnx.Conv, got {type(conv).__name__}")
    stored = common.native_arrays(conv, params, "from_native(conv, params, scale=...)")
    kernel = np.array(stored[0])
    bias = None if stored[1] is None else np.array(stored[1])
    if kernel.ndim not in (3, 4, 5):
        raise ValueError(f"only 1-D, 2-D and 3-D Conv layers are supported, got a kernel of shape {kernel.shape}")
    rank = kernel.ndim - 2
    kernel_size = tuple(kernel.shape[:-2])
    _same(conv, kernel_size)
    dilation = common.per_axis(conv.kernel_dilation, rank)
    grouping: dict[str, Any] = {"groups": conv.feature_group_count, "dilation": dilation}
    spec: Spec
    if method is None:
        if scale is None:
            raise TypeError("from_native(conv, params, scale=...) needs the shuffle's scale when method is None")
        if conv.feature_group_count != 1 and order != "CRD":
            raise ValueError(
                f"order must be 'CRD' for a grouped Conv (feature_group_count={conv.feature_group_count}): another "
                f"order moves channels between groups, which no grouped spec holds; got {shown(order)}"
            )
        blocks = SubpixelSpec(1, scale=scale, spatial_dims=rank).scale  # validated, one per axis
        channels = kernel.shape[-1] // int(np.prod(blocks))
        spec = SubpixelSpec(
            kernel.shape[-2] * conv.feature_group_count,
            channels,
            blocks,
            kernel_size,
            use_bias=bias is not None,
            **grouping,
        )
        inverse = list(
            conv_geometry.inverse_permutation(conv_geometry.shuffle_permutation(order, channels, spec.scale))
        )
        kernel, bias = kernel[..., inverse], None if bias is None else bias[inverse]
    else:
        row = resize_table.jax_row(method)
        if row is None:
            methods = [dict(r.options)["method"] for r in resize_table.JAX]
            raise ValueError(
                f"method must be one of jax.image.resize's {methods} (or None: a shuffle), got {shown(method)}"
            )
        if scale is not None and ResizeSpec(1, scale=scale, spatial_dims=rank).integer_scale is None:
            raise ValueError(
                f"jax.image.resize takes a shape and maps coordinates by output / input: give size= (the shape's "
                f"spatial sizes), not a non-integer scale, got scale={shown(scale)}"
            )
        spec = ResizeSpec(
            kernel.shape[-2] * conv.feature_group_count,
            kernel.shape[-1],
            scale,
            size=size,
            kernel_size=kernel_size,
            use_bias=bias is not None,
            spatial_dims=rank,
            **grouping,
            **resize_table.spec_settings(row.interpolation),
        )
    return spec, Weights(kernel, bias).check(spec)  # type: ignore[arg-type]
