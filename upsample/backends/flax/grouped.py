"""The parameters of a grouped transposed convolution, which Flax's ``ConvTranspose`` cannot hold: it has no
``feature_group_count``. Named and laid out as ``ConvTranspose``'s (``conv/kernel`` flipped on every spatial
axis, ``conv/bias``), with the grouped kernel's shape ``(*k, C_in, C_out // groups)``; the layer computes with
them by :mod:`upsample.phase_split`, one product per group."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

from upsample.spec import UpsampleSpec

Array = Any
Dtype = Any

KERNEL_INIT = nn.initializers.lecun_normal()
"""Flax's default kernel initialiser for ``ConvTranspose``, used here too."""


def _kernel_shape(spec: UpsampleSpec) -> tuple[int, ...]:
    return (*spec.kernel_size, spec.in_channels, spec.out_channels // spec.groups)


class GroupedKernel(nn.Module):
    """A grouped transposed convolution's ``kernel`` and ``bias`` as linen parameters; calling it returns them."""

    spec: UpsampleSpec
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self) -> tuple[Array, Array | None]:
        spec = self.spec
        kernel = self.param("kernel", KERNEL_INIT, _kernel_shape(spec), self.param_dtype)
        if not spec.use_bias:
            return kernel, None
        return kernel, self.param("bias", nn.initializers.zeros_init(), (spec.out_channels,), self.param_dtype)


class GroupedKernelNNX(nnx.Module):
    """A grouped transposed convolution's ``kernel`` and ``bias`` as NNX parameters (``bias`` ``None`` without)."""

    def __init__(self, spec: UpsampleSpec, *, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> None:
        self.param_dtype = param_dtype
        self.kernel = nnx.Param(KERNEL_INIT(rngs.params(), _kernel_shape(spec), param_dtype))
        self.bias = nnx.data(None)
        if spec.use_bias:
            self.bias = nnx.Param(jnp.zeros((spec.out_channels,), param_dtype))
