"""PyTorch layers for every spec kind, one module per kind; the names below are the adapter's interface
(the same in every backend package: see :mod:`upsample.backends`)."""

from upsample.backends.torch.transposed import Upsample, build, from_native, get_weights, set_weights

__all__ = ["Upsample", "build", "from_native", "get_weights", "set_weights"]
