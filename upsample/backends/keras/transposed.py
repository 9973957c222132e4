"""Keras 3 adapter: :class:`Upsample`, a ``keras.layers.Layer`` built from an ``UpsampleSpec``.

Written with ``keras.ops`` only, so it runs on every Keras backend (TensorFlow, JAX, PyTorch). The
layer holds a real ``keras.layers.Conv{1,2,3}DTranspose`` (the spec's rank) named ``conv`` (kernel in Keras
layout ``(*k, C_out, C_in)``, bias ``(C_out,)``) and, for ``residual="projection"``, a bias-free 1x1 (x1)
``keras.layers.Conv{1,2,3}D`` named ``skip``, so ``layer.weights`` are ``[conv/kernel, conv/bias, skip/kernel]``
as a Keras user expects. The weights are created in ``__init__`` (the spec fixes their shapes).
Crops that Keras's ``padding="valid"`` + ``output_padding`` or a symmetric ``"same"`` express run
through ``conv`` itself; any other crop runs the same kernel through ``keras.ops.conv_transpose`` on the
full output, then slices and pads, then adds the bias (padded rows get it too: docs/conventions.md).
A 1-pixel input takes a matmul fast path, and on the JAX backend a larger input the phase formulation of
:mod:`upsample.phase_split` (see :data:`PHASE_SPLIT_BACKENDS`). A grouped or dilated layer, which
``Conv{1,2,3}DTranspose`` cannot express (no groups; no dilation with a stride), holds its variables in a
:class:`~upsample.backends.keras.transposed_kernel.TransposedKernel` named ``conv`` and always runs the phase
split, on every backend (static spatial sizes needed). Internally everything runs
channels-last (TensorFlow has no NCHW transposed convolution on CPU, not even for Keras's own layer);
``data_format="channels_first"`` transposes the input and output around it, and the weights are the
same in both layouts.

Saved ``.keras`` models load back without ``custom_objects`` once this module is imported
(``import upsample.backends.keras``, or any ``spec.build("keras")``): Keras itself only imports
modules of its own packages when deserializing, so the registration must have run.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from upsample import geometry, limits, phase_split
from upsample.backends.keras import common
from upsample.backends.keras.transposed_kernel import TransposedKernel
from upsample.spec import Crops, UpsampleSpec, require_spec
from upsample.spec_kinds import dense_taps
from upsample.weights import Weights, checked

__all__ = ["Upsample", "build", "from_native", "get_weights", "set_weights"]

PHASE_SPLIT_BACKENDS = ("jax",)
"""Keras backends whose inputs larger than 1x1 take :mod:`upsample.phase_split` (with ``fast_path``). Measured
for DCGAN's k4 s2 stage (B16 256->128 8x8, ms, native / phase split): JAX forward 24 / 23, forward + backward
1047 / 50 (XLA convolves a zero-dilated input); TensorFlow 22 / 31 and 43 / 162; torch 46 / 98 and 216 / 323
(oneDNN's deconvolution wins there): ``docs/performance.md``."""


@keras.saving.register_keras_serializable(package="upsample")
class Upsample(keras.layers.Layer):
    """Transposed convolution (plus optional residual skip) exactly as ``spec`` describes.

    Args:
        spec: the layer description.
        weights: canonical :class:`~upsample.Weights` to load; ``None`` keeps Keras's default
            initialisation (seeded by ``keras.utils.set_random_seed``, like every Keras layer).
        data_format: ``"channels_last"`` (NHWC; NLC, NDHWC) or ``"channels_first"`` (NCHW; NCL, NCDHW); default
            ``keras.config.image_data_format()``.
        fast_path: compute a 1-pixel input (1, 1x1, 1x1x1) as one matmul over the stored kernel, and on the JAX
            backend a larger input as one matmul and shifted adds (same parameters, same result); ``False`` always
            uses the transposed convolution.
        **layer_kwargs: ``name``, ``dtype`` (a dtype policy such as ``"mixed_bfloat16"``), ``trainable``.
    """

    def __init__(
        self,
        spec: UpsampleSpec,
        *,
        weights: Weights | None = None,
        data_format: str | None = None,
        fast_path: bool = True,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__(**layer_kwargs)
        limits.check_weights(require_spec(spec, UpsampleSpec))
        data_format = common.data_format(data_format)
        self.spec = spec
        self.data_format = data_format
        self.fast_path = bool(fast_path)
        args = geometry.keras_args(spec.crops, spec.kernel_size, spec.stride)
        self._native = all(rest == (0, 0) for rest in args.rest)
        rank = spec.spatial_dims
        shared: dict[str, Any] = {"dtype": self.dtype_policy}
        if weights is not None:  # skip drawing random values that are overwritten at once (slow on JAX)
            shared["kernel_initializer"] = "zeros"
        self.conv = (
            common.native("Conv{}DTranspose", rank)(
                spec.out_channels,
                spec.kernel_size,
                strides=spec.stride,
                padding=args.padding,
                output_padding=args.output_padding,
                use_bias=spec.use_bias,
                name="conv",
                data_format="channels_last",
                **shared,
            )
            if dense_taps(spec)
            else TransposedKernel(spec, name="conv", **shared)
        )
        self.skip = (
            common.native("Conv{}D", rank)(
                spec.out_channels, 1, use_bias=False, name="skip", data_format="channels_last", **shared
            )
            if spec.residual == "projection"
            else None
        )
        with keras.name_scope(self.name):  # variable paths "<name>/conv/kernel", as if built by Keras
            for sublayer in (self.conv, self.skip):
                if sublayer is not None:
                    sublayer.build((None,) * (rank + 1) + (spec.in_channels,))
        self.built = True
        if weights is not None:
            set_weights(self, weights)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Exact output shape; the batch and spatial sizes may be ``None`` (unknown stays unknown)."""
        return common.output_shape(self, input_shape)

    def call(self, x: Any) -> Any:
        """``x`` in ``data_format`` layout -> output of size ``spec.output_size(size)``."""
        return common.channels_last_call(self, x, self._forward)

    def _forward(self, x: Any, size: tuple[int | None, ...]) -> Any:
        """The layer on channels-last ``x`` of spatial ``size`` (``None`` where known only at run time)."""
        trap = _torch_weight_grad_trap(x)
        spec, dense = self.spec, dense_taps(self.spec)
        phases = self.fast_path and keras.backend.backend() in PHASE_SPLIT_BACKENDS
        if self.fast_path and dense and all(n == 1 for n in size):
            y = self._with_bias(_crop(self._matmul_1x1(x), spec.crops))
        elif (phases or not dense) and None not in size:  # Keras has no grouped transposed convolution
            kernel = keras.ops.swapaxes(self.conv.kernel, -1, -2)  # canonical (*k, C_in, C_out // groups)
            pad_rank = phase_split.TENSORFLOW_PAD_RANK if keras.backend.backend() == "tensorflow" else None
            y = phase_split.transposed_conv(
                keras.ops, x, kernel, spec.stride, spec.crops, spec.groups, spec.dilation, pad_rank
            )
            y = self._with_bias(y)
        elif not dense:
            raise ValueError(
                f"a grouped or dilated Upsample needs static spatial sizes (groups={spec.groups}, "
                f"dilation={spec.dilation}), got size {size} (None: unknown); give every spatial axis in keras.Input"
            )
        elif self._native and not trap:
            y = self.conv(x)
        else:  # the full output (output_padding 0 with "valid"), then the spec's crops
            kernel = _torch_contiguous(self.conv.kernel) if trap else self.conv.kernel
            y = keras.ops.conv_transpose(x, kernel, self.conv.strides, "valid", (0,) * len(size), "channels_last")
            y = self._with_bias(_crop(y, self.spec.crops))
        return common.finish(self, x, y)

    def _matmul_1x1(self, x: Any) -> Any:
        """The full output of a 1-pixel input: ``(B, C_in) @ kernel.T``.

        The kernel ``(*k, C_out, C_in)`` is a ``(prod(k)*C_out, C_in)`` matrix as stored, so the
        product reads it in place; an einsum over the 4-d kernel made XLA copy it on every call. The
        kernel is the left operand and the output (``B*kh*kw*C_out`` values) is transposed, except on
        TensorFlow with a batch of at least ``C_in / 2``: there the kernel as a transposed right operand
        (which TensorFlow re-lays out, ``C_in*kh*kw*C_out`` values) measured faster, while on JAX and
        torch the left-operand order was as fast or faster on every shape (measured: ``docs/performance.md``).
        """
        spec = self.spec
        matrix = keras.ops.reshape(self.conv.kernel, (-1, spec.in_channels))
        rows = keras.ops.reshape(x, (-1, spec.in_channels))
        batch = x.shape[0]
        if keras.backend.backend() == "tensorflow" and batch is not None and 2 * batch >= spec.in_channels:
            product = keras.ops.matmul(rows, keras.ops.transpose(matrix))
        else:  # the kernel as the left operand, read in order; the output is transposed
            product = keras.ops.transpose(keras.ops.matmul(matrix, keras.ops.transpose(rows)))
        return keras.ops.reshape(product, (-1, *spec.kernel_size, spec.out_channels))

    def _with_bias(self, y: Any) -> Any:
        return y if self.conv.bias is None else y + self.conv.bias

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(spec=self.spec.to_dict(), data_format=self.data_format, fast_path=self.fast_path)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Upsample:
        return super().from_config({**config, "spec": UpsampleSpec.from_dict(config["spec"])})


def _torch_weight_grad_trap(x: Any) -> bool:
    """Whether the Keras torch backend's transposed convolution fails in backward on ``x``.

    For a batch of 1 with one input channel, Keras's NHWC -> NCHW permute leaves strides that are both
    contiguous and channels-last, torch's backward then computes a channels-last weight gradient and
    raises "grad_weight needs to be contiguous" (torch 2.13.0, Keras 3.15.1; the native
    ``Conv2DTranspose`` too). A weight that is contiguous in torch's layout avoids it (measured here).
    """
    return keras.backend.backend() == "torch" and x.shape[0] == 1 and x.shape[-1] == 1


def _torch_contiguous(kernel: Any) -> Any:
    """``kernel`` as a view of a copy that is contiguous in torch's ``(C_in, C_out, *k)`` layout,
    which Keras's own permute then finds (see :func:`_torch_weight_grad_trap`); same values and gradients."""
    import torch

    rank = len(kernel.shape) - 2
    to_torch = (rank + 1, rank, *range(rank))
    back = (*range(2, rank + 2), 1, 0)
    return torch.permute(torch.permute(keras.ops.convert_to_tensor(kernel), to_torch).contiguous(), back)


def _crop(y: Any, crops: Crops) -> Any:
    """Slice positive crops off the spatial axes of channels-last ``y`` and zero-pad negative ones."""
    splits = [
        geometry.slice_and_pad(crop, y.shape[1 + a])
        if y.shape[1 + a] is not None
        else geometry.slice_and_pad_unknown(crop)
        for a, crop in enumerate(crops)
    ]
    y = y[(slice(None),) + tuple(slice(*keep) for keep, _ in splits) + (slice(None),)]
    pads = [pad for _, pad in splits]
    return keras.ops.pad(y, ((0, 0), *pads, (0, 0))) if any(any(pad) for pad in pads) else y


def build(spec: UpsampleSpec, *, weights: Weights | None = None, **kwargs: Any) -> Upsample:
    """``Upsample(spec, weights=weights, **kwargs)``: the registry's entry point."""
    return Upsample(spec, weights=weights, **kwargs)


def _require_layer(layer: Any) -> Upsample:
    if not isinstance(layer, Upsample):
        raise TypeError(f"layer must be an upsample.backends.keras.Upsample, got {type(layer).__name__}")
    return layer


def _canonical(conv: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel ``(*k, C_out, C_in)`` -> canonical ``(*k, C_in, C_out)``, and the bias."""
    return np.swapaxes(common.to_numpy(conv.kernel), -1, -2), None if conv.bias is None else common.to_numpy(conv.bias)


def get_weights(layer: Upsample) -> Weights:
    """The layer's weights in the canonical layout (kernel ``(*k, C_in, C_out)``, skip ``(C_in, C_out)``)."""
    layer = _require_layer(layer)
    kernel, bias = _canonical(layer.conv)
    return Weights(kernel, bias, None if layer.skip is None else common.skip_kernel(layer.skip))


def set_weights(layer: Upsample, weights: Weights) -> None:
    """Assign canonical ``weights`` to the layer's variables (cast to each variable's dtype)."""
    layer = _require_layer(layer)
    checked(weights, layer.spec)
    layer.conv.kernel.assign(np.swapaxes(np.asarray(weights.kernel), -1, -2))
    if layer.conv.bias is not None:
        layer.conv.bias.assign(np.asarray(weights.bias))
    if layer.skip is not None:
        common.set_skip_kernel(layer.skip, weights.skip)


NATIVE = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
"""The Keras layers :func:`from_native` reads, one per spatial rank."""


def from_native(conv: Any) -> tuple[UpsampleSpec, Weights]:
    """The spec and canonical weights of a built ``keras.layers.Conv{1,2,3}DTranspose`` (e.g. from a user's model).

    ``Upsample(spec, weights=weights, data_format=conv.data_format)`` gives the same outputs as
    ``conv`` (a ``dilation_rate`` included). Non-linear activations have no spec equivalent and are refused.
    """
    if not isinstance(conv, NATIVE):
        raise TypeError(
            "conv must be a keras.layers.Conv1DTranspose, Conv2DTranspose or Conv3DTranspose, "
            f"got {type(conv).__name__}"
        )
    if not conv.built:
        raise ValueError(
            f"conv {conv.name!r} is not built and has no weights yet; call it on an input or "
            f"conv.build(input_shape) before converting it"
        )
    rank = len(conv.kernel_size)
    if getattr(conv, "groups", 1) != 1:
        raise ValueError(f"conv.groups must be 1 to convert to an UpsampleSpec, got {conv.groups}")
    if conv.activation is not keras.activations.linear:
        raise ValueError(
            f"conv.activation must be linear (None) to convert to an UpsampleSpec, got "
            f"{keras.activations.serialize(conv.activation)!r}; apply the activation after the Upsample layer"
        )
    spec = UpsampleSpec(
        conv.kernel.shape[-1],
        conv.filters,
        kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.strides),
        padding=conv.padding,
        output_padding=conv.output_padding,
        use_bias=conv.use_bias,
        spatial_dims=rank,
        dilation=tuple(conv.dilation_rate),
    )
    kernel, bias = _canonical(conv)
    return spec, Weights(kernel, bias)
