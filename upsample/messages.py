"""Received values as error messages show them: at most a short prefix, so a huge or deeply nested
argument cannot make a huge message."""

from __future__ import annotations

import reprlib
from typing import Any

LIMIT = 80
"""Characters of a received value that a message shows at most."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, LIMIT, LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def shown(value: Any) -> str:
    """``repr(value)``, bounded to about ``LIMIT`` characters (``...`` marks what was left out)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a value whose repr fails still gets a message
        text = f"<{type(value).__name__}>"
    return text if len(text) <= LIMIT + 3 else text[:LIMIT] + "..."
