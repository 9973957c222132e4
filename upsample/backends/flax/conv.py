"""Flax layers (linen and NNX) for the sub-pixel and resize kinds, both over Flax's own ``Conv``.

JAX and Flax have no pixel-shuffle op, so the shuffle is the canonical CRD reshape/transpose (torch
``PixelShuffle``'s order in 2-D, MONAI's ``pixelshuffle`` at any rank, docs/choosing-an-upsampler.md) and weights
convert without a permutation. The resize is ``jnp.repeat`` where it repeats pixels, ``jax.image.resize`` where
that computes the spec's (ONNX ``Resize``) definition (:data:`upsample.resize_table.JAX`), else gathers and
weighted sums (:func:`upsample.resize_ops.resize`), chosen once from the spec. The convolution takes the spec's explicit
"same" pads, so even kernels pad as the spec.

Modules (channels-last ``(N, *spatial, C)``, 1 to 3 spatial axes): linen ``Subpixel`` / ``ResizeConv`` (fields
``spec, dtype, param_dtype, fast_path``) and NNX ``SubpixelNNX`` / ``ResizeConvNNX`` (``spec, *, rngs, dtype,
param_dtype, fast_path``). Parameters::

    conv/kernel  (*k, C_in // groups, C_conv)  the canonical kernel itself (HWIO in 2-D)
    conv/bias    (C_conv,)           when spec.use_bias
    skip/kernel  (C_in, C_out)       the canonical skip, when spec.residual == "projection"

Groups and dilation are ``Conv``'s own ``feature_group_count`` and ``kernel_dilation``. For ungrouped, undilated
kernels: a sub-pixel layer on a one-pixel input (static shape) is one matmul with the kernel's centre tap
(``fast_path``), and a nearest resize-convolution (``fast_path``) is one transposed convolution of the summed kernel
on the small input (``geometry.nearest_resize_as_transposed``, :mod:`upsample.phase_split`): no resized copy, and
``(k+s-1)^2`` taps per input pixel instead of ``s^2 k^2`` (measured 0.06-0.74x of resize + ``Conv`` forward,
0.26-0.54x forward + backward).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.linen.dtypes import promote_dtype

from upsample import limits, phase_split, resize_ops, resize_table
from upsample.backends.flax import common
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.spec import require_spec
from upsample.spec_kinds import dense_taps
from upsample.weights import Weights, init_weights

Array = Any
Dtype = Any
Spec = SubpixelSpec | ResizeSpec
Tree = dict[str, dict[str, Any]]


def pixel_shuffle(z: Array, scale: Sequence[int], channels: int) -> Array:
    """CRD pixel shuffle of channels-last ``z (B, *spatial, channels * prod(scale))``: channel
    ``c * prod(r) + flat(i_1..i_d)`` (row-major sub-pixel index) -> channel ``c`` at sub-pixel ``(i_1..i_d)``
    (torch ``PixelShuffle`` in 2-D, MONAI's ``pixelshuffle``)."""
    batch, *size, _ = z.shape
    rank = len(size)
    z = z.reshape(batch, *size, channels, *scale)
    # (B, *size, C, *r) -> (B, size_1, r_1, ..., size_d, r_d, C)
    z = z.transpose(0, *(i for a in range(rank) for i in (1 + a, rank + 2 + a)), rank + 1)
    return z.reshape(batch, *(n * r for n, r in zip(size, scale, strict=True)), channels)


def _resize(x: Array, spec: ResizeSpec) -> Array:
    """Channels-last ``x`` resized as ``spec`` says."""
    batch, *size, channels = x.shape
    size, rank = tuple(size), spec.spatial_dims
    if spec.repeats:
        for axis, factor in enumerate(spec.integer_scale, start=1):  # type: ignore[arg-type]  # repeats: an int scale
            x = jnp.repeat(x, factor, axis=axis)
        return x
    native = resize_table.native_resize(resize_table.JAX, spec)
    if native is None:
        return resize_ops.resize_as(spec, x, range(1, 1 + rank), size, _take, lambda w, x: jnp.asarray(w, x.dtype))
    return jax.image.resize(x, (batch, *spec.output_size(size), channels), **dict(native.options))  # type: ignore[arg-type]


def _take(x: Array, indices: np.ndarray, axis: int) -> Array:
    return jnp.take(x, jnp.asarray(indices), axis=axis)


def _nearest_by_phases(x: Array, kernel: Array, bias: Array | None, spec: ResizeSpec, dtype: Dtype | None) -> Array:
    """Nearest resize + conv as one transposed convolution of the summed kernel on the small input
    (``geometry.nearest_resize_as_transposed``), by :mod:`upsample.phase_split`; plus bias."""
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=dtype)
    y = phase_split.nearest_resize_conv(jnp, x, kernel, spec.scale, spec.kernel_size)
    return y if bias is None else y + bias


def _forward(
    spec: Spec,
    x: Array,
    *,
    conv: Callable[[Array], Array],
    stored: Callable[[], tuple[Array, Array | None]],
    project: Callable[[Array], Array] | None,
    dtype: Dtype | None,
    fast_path: bool,
) -> Array:
    """The layer for both APIs; ``stored()`` is the conv's ``(kernel, bias)``."""

    def kind(x: Array, size: tuple[int, ...]) -> Array:
        if isinstance(spec, ResizeSpec):
            if spec.resize_only:
                return _resize(x, spec)
            if fast_path and dense_taps(spec) and spec.repeats:
                return _nearest_by_phases(x, *stored(), spec, dtype)
            return conv(_resize(x, spec))
        if fast_path and dense_taps(spec) and all(length == 1 for length in size):  # only the centre tap reads it
            centre = tuple(before for before, _ in spec.padding)
            rows, kernel, bias = promote_dtype(x.reshape(x.shape[0], x.shape[-1]), *stored(), dtype=dtype)
            z = rows @ kernel[centre]
            z = (z if bias is None else z + bias).reshape(x.shape[0], *size, -1)
        else:
            z = conv(x)
        return pixel_shuffle(z, spec.scale, spec.out_channels)

    return common.run(spec, x, kind, project, dtype)


def _conv_options(spec: Spec) -> dict[str, Any]:
    """The spec's stride-1 "same" convolution as both APIs' ``Conv`` take it (none for a resize alone)."""
    return {
        "kernel_size": spec.kernel_size,
        "padding": spec.padding,
        "kernel_dilation": spec.dilation,
        "feature_group_count": spec.groups,
        "use_bias": spec.use_bias,
    }


# --- linen --------------------------------------------------------------------------------------


class _LinenKind(nn.Module):
    """A kind's layer as a linen module (NHWC); parameters as in the module docstring."""

    spec: Spec
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    fast_path: bool = True

    def setup(self) -> None:
        spec = self.spec
        limits.check_weights(require_spec(spec, SubpixelSpec if isinstance(self, Subpixel) else ResizeSpec))
        common = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        self.conv: Any = (
            None if spec.kernel_size is None else nn.Conv(spec.conv_channels, **_conv_options(spec), **common)
        )
        if spec.residual == "projection":
            self.skip = nn.Dense(spec.out_channels, use_bias=False, **common)

    def __call__(self, x: Array) -> Array:
        def stored() -> tuple[Array, Array | None]:
            params = self.conv.variables["params"]
            return params["kernel"], params.get("bias")

        project = self.skip if self.spec.residual == "projection" else None
        fast_path = self.fast_path and not self.is_initializing()  # the conv's params exist once it ran
        return _forward(
            self.spec, x, conv=self.conv, stored=stored, project=project, dtype=self.dtype, fast_path=fast_path
        )


class Subpixel(_LinenKind):
    """Sub-pixel convolution exactly as a :class:`~upsample.SubpixelSpec` describes (linen, NHWC)."""


class ResizeConv(_LinenKind):
    """Resize-convolution exactly as a :class:`~upsample.ResizeSpec` describes (linen, NHWC)."""


# --- NNX ----------------------------------------------------------------------------------------


class _NNXKind(nnx.Module):
    """A kind's layer as an NNX module (NHWC), initialised by Flax from ``rngs``; parameters as above."""

    def __init__(
        self,
        spec: Spec,
        *,
        rngs: nnx.Rngs,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        fast_path: bool = True,
    ) -> None:
        limits.check_weights(require_spec(spec, SubpixelSpec if isinstance(self, SubpixelNNX) else ResizeSpec))
        self.spec = spec
        self.dtype = dtype
        self.fast_path = fast_path
        common = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.param_dtype = param_dtype
        self.conv: Any = nnx.data(None)  # a pytree slot: the convolution, or None for a resize alone
        if spec.kernel_size is not None:
            self.conv = nnx.Conv(spec.in_channels, spec.conv_channels, **_conv_options(spec), **common)
        self.skip = nnx.data(None)  # a pytree slot: the projection's Linear, or None without one
        if spec.residual == "projection":
            self.skip = nnx.Linear(spec.in_channels, spec.out_channels, use_bias=False, **common)

    def __call__(self, x: Array) -> Array:
        def stored() -> tuple[Array, Array | None]:
            return self.conv.kernel[...], None if self.conv.bias is None else self.conv.bias[...]

        return _forward(
            self.spec, x, conv=self.conv, stored=stored, project=self.skip, dtype=self.dtype, fast_path=self.fast_path
        )


class SubpixelNNX(_NNXKind):
    """Sub-pixel convolution exactly as a :class:`~upsample.SubpixelSpec` describes (NNX, NHWC)."""


class ResizeConvNNX(_NNXKind):
    """Resize-convolution exactly as a :class:`~upsample.ResizeSpec` describes (NNX, NHWC)."""


# --- weights ------------------------------------------------------------------------------------

LINEN = (Subpixel, ResizeConv)
NNX = (SubpixelNNX, ResizeConvNNX)
Layer = Subpixel | ResizeConv | SubpixelNNX | ResizeConvNNX | tuple[Subpixel | ResizeConv, Any]


def layer_class(spec: Spec, api: str) -> type[_LinenKind] | type[_NNXKind]:
    """The class of ``spec``'s layer in ``api`` (``"linen"`` or ``"nnx"``), as a head builds its stages."""
    linen, nnx_class = (Subpixel, SubpixelNNX) if isinstance(spec, SubpixelSpec) else (ResizeConv, ResizeConvNNX)
    return linen if api == "linen" else nnx_class


def to_variables(spec: Spec, weights: Weights, param_dtype: Dtype = jnp.float32) -> dict[str, Tree]:
    """Canonical ``weights`` as linen variables ``{"params": ...}`` (``apply``/``bind``)."""
    weights.check(spec)  # type: ignore[arg-type]
    as_param = lambda array: jnp.asarray(array, dtype=param_dtype)  # noqa: E731
    if weights.kernel is None:  # a resize alone
        return {"params": {}}
    params: Tree = {"conv": {"kernel": as_param(weights.kernel)}}
    if spec.use_bias:
        params["conv"]["bias"] = as_param(weights.bias)
    if spec.residual == "projection":
        params["skip"] = {"kernel": as_param(weights.skip)}
    return {"params": params}


def _from_params(spec: Spec, params: Tree) -> Weights:
    """Inverse of :func:`to_variables` on the ``params`` tree (linen's, or NNX's as a pure dict)."""
    conv, skip = params.get("conv"), params.get("skip")
    if conv is None:  # a resize alone
        return Weights(None).check(spec)  # type: ignore[arg-type]
    return Weights(
        kernel=np.array(conv["kernel"]),
        bias=np.array(conv["bias"]) if spec.use_bias else None,
        skip=np.array(skip["kernel"]) if skip is not None else None,
    ).check(spec)  # type: ignore[arg-type]


def get_weights(layer: Layer) -> Weights:
    """Canonical weights of an NNX layer, a bound linen layer or a ``(module, variables)`` pair."""
    if isinstance(layer, NNX):
        return _from_params(layer.spec, nnx.to_pure_dict(nnx.state(layer, nnx.Param)))
    if isinstance(layer, tuple):
        module, variables = layer
    elif isinstance(layer, LINEN) and layer.scope is not None:
        module, variables = layer.unbind()
    else:
        raise ValueError(
            f"layer must be an NNX layer, a bound linen layer or (module, variables), got {type(layer).__name__}"
        )
    return _from_params(module.spec, variables["params"])


def set_weights(layer: Any, weights: Weights) -> Any:
    """Put canonical ``weights`` into ``layer`` and return it (NNX in place; linen: a new bound module)."""
    if isinstance(layer, NNX):
        state = nnx.state(layer, nnx.Param)
        nnx.replace_by_pure_dict(state, to_variables(layer.spec, weights, layer.param_dtype)["params"])
        nnx.update(layer, state)
        return layer
    if not isinstance(layer, LINEN):
        raise TypeError(f"layer must be a Subpixel, ResizeConv or their NNX forms, got {type(layer).__name__}")
    module, variables = layer.unbind() if layer.scope is not None else (layer, {})
    return module.bind({**variables, **to_variables(module.spec, weights, module.param_dtype)})


def build(spec: Spec, *, weights: Weights | None = None, api: str = "linen", **kwargs: Any) -> Any:
    """The layer for ``spec`` holding ``weights`` (default ``init_weights(spec, seed=0)``, the same in both APIs);
    ``api="linen"`` returns a bound linen module, ``api="nnx"`` an NNX module."""
    weights = init_weights(spec, seed=0) if weights is None else weights  # type: ignore[arg-type]
    sub = isinstance(spec, SubpixelSpec)
    if api == "linen":
        return set_weights((Subpixel if sub else ResizeConv)(spec, **kwargs), weights)
    if api == "nnx":
        # Abstract construction: Flax's initialisers would only compute values set_weights replaces.
        cls = SubpixelNNX if sub else ResizeConvNNX
        return set_weights(nnx.eval_shape(lambda: cls(spec, rngs=nnx.Rngs(0), **kwargs)), weights)
    raise ValueError(f"api must be 'linen' or 'nnx', got {api!r}")
