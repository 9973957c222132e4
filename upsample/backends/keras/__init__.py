"""Keras 3 layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`). Importing this package registers the
layers with Keras, so saved ``.keras`` models load back."""

from upsample.backends.keras.transposed import Upsample, build, from_native, get_weights, set_weights

__all__ = ["Upsample", "build", "from_native", "get_weights", "set_weights"]
