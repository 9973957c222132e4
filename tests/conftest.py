"""Modules that need a fixed ``KERAS_BACKEND`` run only in the per-backend child processes that
tests/test_keras_backends.py starts (``UPSAMPLE_KERAS_CHILD=1``); the outer run does not collect them."""

from __future__ import annotations

import os

PER_KERAS_BACKEND = ["test_keras.py", "test_equivalence.py", "test_porting.py"]

collect_ignore = [] if os.environ.get("UPSAMPLE_KERAS_CHILD") == "1" else PER_KERAS_BACKEND
