"""Flax (linen and NNX) layers for every spec kind, one module per kind; the names below are the adapter's
interface (the same in every backend package: see :mod:`upsample.backends`)."""

from upsample.backends.flax.transposed import (
    Upsample,
    UpsampleNNX,
    build,
    from_native,
    get_weights,
    set_weights,
    to_variables,
)

__all__ = ["Upsample", "UpsampleNNX", "build", "from_native", "get_weights", "set_weights", "to_variables"]
