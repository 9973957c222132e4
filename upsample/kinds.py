"""The kinds of upsampler in one table: what each kind is, once, for every layer of the house to read.

A row names a kind's spec class, the module that builds its layer in every backend package (the same
module name in ``upsample.backends.torch``, ``.keras`` and ``.flax``), its NumPy reference and its ONNX
emitter. ``load_spec``, :mod:`upsample.reference`, the backend packages' ``build``/``get_weights``/
``set_weights`` and :mod:`upsample.onnx` look a kind up here instead of switching on spec classes, so a new
kind is one row here plus its modules. Nothing is imported until a row is used.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from upsample.messages import shown


class Kind(NamedTuple):
    """One kind of upsampler; every reference is ``"module:name"``, imported on use."""

    name: str
    """The ``kind`` field of the spec's JSON, and ``spec.KIND``."""
    spec: str
    """The spec class."""
    layer_module: str
    """The module of each backend package that builds, reads and writes the kind's layers."""
    reference: str
    """The NumPy reference's ``(forward, vjp)`` of the kind's convolution step (before bias and residual)."""
    onnx: str
    """The ONNX emitter ``(spec, weights, size, graph, x) -> output name``."""
    old_names: tuple[str, ...] = ()
    """Names files written before used for this kind (still read)."""


KINDS: tuple[Kind, ...] = (
    Kind(
        "transposed",
        "upsample.spec:UpsampleSpec",
        "transposed",
        "upsample.reference:TRANSPOSED",
        "upsample.onnx.export:emit_transposed",
    ),
    Kind(
        "subpixel",
        "upsample.conv_specs:SubpixelSpec",
        "conv",
        "upsample.reference:SUBPIXEL",
        "upsample.onnx.export:emit_subpixel",
    ),
    Kind(
        "resize",
        "upsample.conv_specs:ResizeSpec",
        "conv",
        "upsample.reference:RESIZE",
        "upsample.onnx.export:emit_resize",
    ),
    Kind(
        "head",
        "upsample.head:HeadSpec",
        "head",
        "upsample.head_reference:HEAD",
        "upsample.onnx.heads:emit_head",
        old_names=("stack",),
    ),
)

BY_NAME: dict[str, Kind] = {name: kind for kind in KINDS for name in (kind.name, *kind.old_names)}
"""Every kind by its name and its old names."""
LAYER_KINDS = tuple(kind.name for kind in KINDS if kind.name != "head")
"""The kinds of one layer (a head is stages of these)."""


def resolve(reference: str) -> Any:
    """The object a ``"module:name"`` reference names."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def kind_of(spec: Any) -> Kind:
    """The row of ``spec``'s kind (its ``KIND``); a ``TypeError`` for anything that is not a spec."""
    name = getattr(type(spec), "KIND", None)
    if not isinstance(name, str) or name not in BY_NAME:
        raise TypeError(f"expected an upsample spec (e.g. UpsampleSpec), got {type(spec).__name__}")
    return BY_NAME[name]


def named(name: Any) -> Kind:
    """The row of the kind called ``name`` (a JSON ``kind`` field)."""
    if not isinstance(name, str) or name not in BY_NAME:
        raise ValueError(f"spec kind must be one of {sorted(BY_NAME)}, got {shown(name)}")
    return BY_NAME[name]
