"""ONNX in and out: a spec and its weights as a standalone ONNX model, and the spec of an
ONNX ``ConvTranspose`` node under every attribute form.

- :func:`to_onnx` / :func:`export_file`: NCHW in and out (``(N, C, *spatial)`` at 1 or 3 spatial axes), dynamic
  batch, dynamic spatial axes wherever the spec allows (a residual with a non-integer ratio fixes them), explicit
  non-negative ``pads`` only (no ``auto_pad``, ``output_shape`` or ``output_padding``, whose meaning
  differs between runtimes and versions); rows a crop adds are a ``Pad`` before the bias.
- :func:`from_onnx`: a ``ConvTranspose`` node (``group`` and ``dilations`` included) as a spec and canonical
  weights, read the way onnxruntime runs it (:mod:`upsample.onnx.padding` says where that differs from the
  operator text).
- :func:`describe`: every upsampling layer of a model (transposed, sub-pixel, resize-convolution, dense
  projection) as a spec with its verdict at its own input size, from shape inference through the graph.

Needs ``onnx`` (``pip install "upsample[onnx]"``, with ``onnxruntime`` to run the models); it is imported
when one of these names is first used, so ``import upsample.onnx`` alone loads nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

_LAZY = {
    "to_onnx": "upsample.onnx.export",
    "export_file": "upsample.onnx.export",
    "DEFAULT_OPSET": "upsample.onnx.export",
    "from_onnx": "upsample.onnx.load",
    "describe": "upsample.onnx.load",
    "OnnxLayer": "upsample.onnx.load",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'upsample.onnx' has no attribute {name!r}")
    if importlib.util.find_spec("onnx") is None:
        raise ImportError(f'upsample.onnx.{name} needs the onnx package: pip install "upsample[onnx]"')
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from upsample.onnx.export import DEFAULT_OPSET as DEFAULT_OPSET
    from upsample.onnx.export import export_file as export_file
    from upsample.onnx.export import to_onnx as to_onnx
    from upsample.onnx.load import OnnxLayer as OnnxLayer
    from upsample.onnx.load import describe as describe
    from upsample.onnx.load import from_onnx as from_onnx
