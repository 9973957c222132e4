"""The old name of :mod:`upsample.head_reference`, kept for one release (heads were called stacks)."""

from upsample.head_reference import *  # noqa: F403
