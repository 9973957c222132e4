"""The old name of :mod:`upsample.head`, kept for one release (heads were called stacks)."""

from upsample.head import *  # noqa: F403
from upsample.head import StackSpec as StackSpec  # noqa: E402
