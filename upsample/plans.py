"""A spec of any kind that maps an input size to an output size: what ``upsample plan``, ``check`` and
``bench`` build from ``--mode`` and a size. The transposed kind is
:meth:`UpsampleSpec.for_size`; the sub-pixel and resize kinds scale by ``size / input_size``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from upsample.arguments import IntOrAxes, as_axes, axis_names, spatial_rank
from upsample.messages import shown
from upsample.spec import Residual, UpsampleSpec

MODES = ("transposed", "subpixel", "resize")
"""Spec kinds by their ``kind`` name: ``UpsampleSpec``, ``SubpixelSpec``, ``ResizeSpec``."""


def for_size(
    mode: str,
    in_channels: int,
    size: IntOrAxes,
    *,
    out_channels: int | None = None,
    input_size: IntOrAxes = 1,
    kernel_size: IntOrAxes | None = None,
    residual: Residual | None = None,
    method: str | None = None,
    use_bias: bool = True,
    spatial_dims: int | None = None,
) -> Any:
    """The ``mode`` spec from ``input_size`` to ``size``; ``method`` is the resize kind's only. ``spatial_dims``
    defaults to the length of the sizes given as tuples, else 2.

    Sub-pixel and resize default to kernel 3, but 1 along an axis of a 1-pixel input: there a "same"
    convolution reads only its centre tap, so larger kernels add parameters that never learn.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {shown(mode)}")
    if method is not None and mode != "resize":
        raise ValueError(f"method applies to the resize mode only, not {shown(mode)}")
    rank = spatial_rank(spatial_dims, {"size": size, "input_size": input_size, "kernel_size": kernel_size})
    if mode == "transposed":
        spec = UpsampleSpec.for_size(
            in_channels,
            size,
            out_channels=out_channels,
            input_size=input_size,
            kernel_size=kernel_size,
            residual=residual,
            spatial_dims=rank,
        )
        return spec if use_bias is True else dataclasses.replace(spec, use_bias=use_bias)
    from upsample.conv_specs import ResizeSpec, SubpixelSpec

    target, source = as_axes("size", size, rank, 1), as_axes("input_size", input_size, rank, 1)
    for axis, t, s in zip(axis_names(rank), target, source, strict=True):
        if t % s:
            raise ValueError(f"size {t} is not a multiple of input_size {s} along {axis}: {mode} scales by an int")
    scale = tuple(t // s for t, s in zip(target, source, strict=True))
    kernel = kernel_size if kernel_size is not None else tuple(1 if s == 1 else 3 for s in source)
    if mode == "subpixel":
        return SubpixelSpec(
            in_channels,
            out_channels,
            scale=scale,
            kernel_size=kernel,
            residual=residual,
            use_bias=use_bias,
            spatial_dims=rank,
        )
    return ResizeSpec(
        in_channels,
        out_channels,
        scale=scale,
        method=method or "nearest",
        kernel_size=kernel,
        residual=residual,
        use_bias=use_bias,
        spatial_dims=rank,
    )


def plan_transposed_axis(
    axis: str, source: int, target: int, kernel: int | None, rank: int = 2
) -> tuple[int, int, tuple[int, int]]:
    """Kernel, stride and crop for one axis of :meth:`UpsampleSpec.for_size`: the dense projection from one
    pixel, else kernel ``2 * scale`` at stride ``scale`` (even overlap, every pixel live)."""
    if source == 1:
        k = target if kernel is None else kernel
        if k < target:
            one = "x".join("1" * rank)
            raise ValueError(
                f"cannot reach {target} pixels along {axis} from a {one} input with kernel {k} in one stage: "
                f"a {one} input reaches at most kernel pixels without dead ones; use kernel_size >= {target} "
                f"(the default picks {target}), or stack stages (e.g. 1 -> {k}, then integer scales)"
            )
        excess = k - target
        return k, 1, (excess // 2, excess - excess // 2)
    if target % source:
        raise ValueError(
            f"cannot go from {source} to {target} pixels along {axis} in one stage: one transposed "
            f"convolution with even overlap needs an integer scale; pick a size that is a multiple of {source}"
        )
    scale = target // source
    k = 2 * scale if kernel is None else kernel
    if k < scale or k % scale:
        raise ValueError(
            f"kernel {k} along {axis} does not give even overlap at scale {scale}: the kernel must be a "
            f"multiple of the stride {scale} (e.g. {2 * scale})"
        )
    excess = k - scale
    return k, scale, (excess // 2, excess - excess // 2)
