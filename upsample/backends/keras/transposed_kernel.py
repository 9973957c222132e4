"""The variables of a grouped or dilated transposed convolution, which Keras's ``Conv{1,2,3}DTranspose`` cannot hold:
it has no ``groups``, and refuses a ``dilation_rate`` with a stride above 1. Named and laid out as that layer's
(``conv/kernel``, ``conv/bias``), each group's block side by side: kernel ``(*k, C_out // groups, C_in)``, the
canonical kernel with its channel axes swapped as for ``groups == 1``. :class:`upsample.backends.keras.Upsample`
computes with them by :mod:`upsample.phase_split`."""

from __future__ import annotations

from typing import Any

import keras

from upsample.spec import UpsampleSpec


class TransposedKernel(keras.layers.Layer):
    """A grouped or dilated transposed convolution's ``kernel`` and ``bias`` (``None`` without one), created by
    ``build``."""

    def __init__(self, spec: UpsampleSpec, *, kernel_initializer: Any = "glorot_uniform", **layer_kwargs: Any) -> None:
        super().__init__(**layer_kwargs)
        self.spec = spec
        self.kernel_initializer = kernel_initializer
        self.bias = None

    def build(self, input_shape: Any = None) -> None:
        spec = self.spec
        shape = (*spec.kernel_size, spec.out_channels // spec.groups, spec.in_channels)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer)
        if spec.use_bias:
            self.bias = self.add_weight(name="bias", shape=(spec.out_channels,), initializer="zeros")
        self.built = True

    def call(self, x: Any) -> Any:
        raise NotImplementedError("TransposedKernel only holds variables; the Upsample layer computes with them")
