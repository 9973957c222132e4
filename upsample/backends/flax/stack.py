"""The old name of :mod:`upsample.backends.flax.head`, kept for one release (heads were called stacks)."""

from upsample.backends.flax.head import *  # noqa: F403
