"""upsample: a 1x1xC feature map to an NxNxC' map with one learned layer, the same in every framework.

A layer is described once by an :class:`UpsampleSpec` and built as a native PyTorch, Keras 3 or
Flax layer with :meth:`UpsampleSpec.build`. Importing this package loads no deep-learning framework.
"""

from upsample import reference
from upsample.checks import UpsampleWarning
from upsample.spec import CoverageReport, UpsampleSpec
from upsample.weights import Weights, WeightsFileError, init_weights, load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "CoverageReport",
    "UpsampleSpec",
    "UpsampleWarning",
    "Weights",
    "WeightsFileError",
    "__version__",
    "init_weights",
    "load_weights",
    "reference",
    "save_weights",
]
