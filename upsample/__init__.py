"""upsample: a 1x1xC feature map to an NxNxC' map with one learned layer, the same in every framework.

A layer is described once by an :class:`UpsampleSpec` and built as a native PyTorch, Keras 3 or
Flax layer with :meth:`UpsampleSpec.build`. Importing this package loads no deep-learning framework,
and not even NumPy: the public names are imported on first use (PEP 562) so ``import upsample``
stays well under 100 ms.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "UpsampleSpec": "upsample.spec",
    "CoverageReport": "upsample.coverage_report",
    "Blur": "upsample.blur",
    "find": "upsample.finder",
    "Found": "upsample.finder",
    "load_spec": "upsample.spec",
    "SubpixelSpec": "upsample.conv_specs",
    "ResizeSpec": "upsample.conv_specs",
    "HeadSpec": "upsample.head",
    "StackSpec": "upsample.head",
    "Norm": "upsample.head",
    "Activation": "upsample.head",
    "HeadWeights": "upsample.head_weights",
    "StackWeights": "upsample.head_weights",
    "plan": "upsample.head_plan",
    "save_head": "upsample.head_weights",
    "load_head": "upsample.head_weights",
    "UpsampleWarning": "upsample.checks",
    "Weights": "upsample.weights",
    "WeightsFileError": "upsample.weights",
    "init_weights": "upsample.weights",
    "load_weights": "upsample.weights",
    "save_weights": "upsample.weights",
}
_SUBMODULES = ("reference", "geometry", "backends", "checks", "spec", "weights")

__all__ = sorted([*_LAZY, "reference", "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"upsample.{name}")
    else:
        raise AttributeError(f"module 'upsample' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


if TYPE_CHECKING:
    from upsample import reference as reference
    from upsample.blur import Blur as Blur
    from upsample.checks import UpsampleWarning as UpsampleWarning
    from upsample.conv_specs import ResizeSpec as ResizeSpec
    from upsample.conv_specs import SubpixelSpec as SubpixelSpec
    from upsample.coverage_report import CoverageReport as CoverageReport
    from upsample.finder import Found as Found
    from upsample.finder import find as find
    from upsample.head import Activation as Activation
    from upsample.head import HeadSpec as HeadSpec
    from upsample.head import Norm as Norm
    from upsample.head import StackSpec as StackSpec
    from upsample.head_plan import plan as plan
    from upsample.head_weights import HeadWeights as HeadWeights
    from upsample.head_weights import StackWeights as StackWeights
    from upsample.head_weights import load_head as load_head
    from upsample.head_weights import save_head as save_head
    from upsample.spec import UpsampleSpec as UpsampleSpec
    from upsample.spec import load_spec as load_spec
    from upsample.weights import Weights as Weights
    from upsample.weights import WeightsFileError as WeightsFileError
    from upsample.weights import init_weights as init_weights
    from upsample.weights import load_weights as load_weights
    from upsample.weights import save_weights as save_weights
