"""The old name of :mod:`upsample.backends.keras.head`, kept for one release (heads were called stacks)."""

from upsample.backends.keras.head import *  # noqa: F403
