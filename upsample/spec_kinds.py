"""What every spec kind shares and no kind owns: the table of kinds, reading a spec of any kind from
JSON or a dict (:func:`load_spec`), bounded JSON parsing, and the check that a value is a spec."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from upsample.kinds import BY_NAME, named, resolve
from upsample.messages import shown

SPEC_KINDS: dict[str, str] = {name: kind.spec for name, kind in BY_NAME.items()}
"""Each spec kind's ``"module:Class"`` (from :data:`upsample.kinds.KINDS`); imported when a spec of that kind
is read."""


class ParamCount(int):
    """A spec's parameter count, read as a method like ``flops(...)`` and Keras's ``count_params()``:
    ``spec.num_params()``. It is an int that may be called, so ``spec.num_params`` read as an attribute
    (as before it became a method) keeps working for one release."""

    def __call__(self) -> int:
        return int(self)


Residual = Literal["nearest", "projection"]
RESIDUAL_MODES = ("nearest", "projection")


def checked_residual(residual: Any, in_channels: int, out_channels: int) -> Residual | None:
    """A spec's ``residual`` argument, checked: ``None``, or a mode of :data:`RESIDUAL_MODES` its channels allow."""
    if residual is not None and (not isinstance(residual, str) or residual not in RESIDUAL_MODES):
        raise ValueError(f"residual must be None, 'nearest' or 'projection', got {shown(residual)}")
    if residual == "nearest" and in_channels != out_channels:
        raise ValueError(
            f"residual='nearest' is an identity skip and needs in_channels == out_channels, got "
            f"in_channels={in_channels}, out_channels={out_channels}; use residual='projection' for a learned 1x1 "
            f"map between channel counts"
        )
    return residual  # type: ignore[return-value]  # one of RESIDUAL_MODES, checked above


def load_spec(source: str | Mapping[str, Any]) -> Any:
    """The spec of the right kind from its JSON text or dict (no ``kind``: a transposed spec, as written
    before kinds existed)."""
    if isinstance(source, (str, bytes, bytearray)):
        source = parse_json(source)
    if not isinstance(source, Mapping):
        raise TypeError(f"a spec must be a JSON object or mapping, got {type(source).__name__}")
    return resolve(named(source.get("kind", "transposed")).spec).from_dict(source)


def optional_fields(spec: Any) -> dict[str, Any]:
    """The fields a spec's JSON carries only where they differ from their defaults (``spatial_dims`` 2, ``groups``
    1, ``dilation`` 1, no ``blur``), so a spec without them writes what it always wrote and every older file loads."""
    data: dict[str, Any] = {}
    if spec.spatial_dims != 2:
        data["spatial_dims"] = spec.spatial_dims
    if spec.groups != 1:
        data["groups"] = spec.groups
    if set(spec.dilation) != {1}:
        data["dilation"] = list(spec.dilation)
    if spec.blur is not None:
        data["blur"] = spec.blur.to_dict()
    return data


OPTIONAL_KEYS = ("spatial_dims", "groups", "dilation", "blur")
"""The keys of :func:`optional_fields`."""


def dense_taps(spec: Any) -> bool:
    """Whether ``spec``'s kernel is one dense block of adjacent taps (``groups`` 1, ``dilation`` 1): the fast paths
    that read the kernel as one ``(C_in, taps * C_out)`` matrix, or its centre tap alone, need that."""
    return bool(spec.groups == 1 and set(spec.dilation) == {1})


MAX_JSON_CHARS = 1 << 20
"""Longest spec JSON text read (a spec is a few hundred characters; a head of many stages a few KB)."""


def parse_json(text: Any) -> Any:
    """JSON text as Python values, with ``ValueError`` (never ``RecursionError``) for text that is not
    JSON, too long, or nested too deeply for Python's parser."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(f"spec JSON must be text, got {type(text).__name__}")
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"spec JSON is {len(text):,} characters long; at most {MAX_JSON_CHARS:,} are read")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("spec JSON is nested too deeply to be a spec") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"spec JSON is not valid JSON: {shown(str(error))}") from None


def require_spec(value: Any, kind: type | None = None, name: str = "spec") -> Any:
    """``value`` if it is a spec (of class ``kind``, when given); a ``TypeError`` naming ``name`` otherwise
    (a dict from ``to_dict()`` included: :func:`load_spec` reads that)."""
    wanted = "an upsample spec (e.g. UpsampleSpec)" if kind is None else f"an upsample {kind.__name__}"
    if (
        isinstance(value, Mapping)
        or not callable(getattr(value, "weight_shapes", None))
        or (kind is not None and not isinstance(value, kind))
    ):
        hint = "; a dict from to_dict() reads back with upsample.load_spec(d)" if isinstance(value, Mapping) else ""
        raise TypeError(f"{name} must be {wanted}, got {type(value).__name__}{hint}")
    return value
