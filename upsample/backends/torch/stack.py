"""The old name of :mod:`upsample.backends.torch.head`, kept for one release (heads were called stacks)."""

from upsample.backends.torch.head import *  # noqa: F403
