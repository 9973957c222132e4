"""The old name of :mod:`upsample.head_weights`, kept for one release (heads were called stacks)."""

from upsample.head_weights import *  # noqa: F403
from upsample.head_weights import StackWeights as StackWeights  # noqa: E402
