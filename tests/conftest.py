"""Modules that need a fixed ``KERAS_BACKEND`` run only in the per-backend child processes that
tests/test_keras_backends.py starts (``UPSAMPLE_KERAS_CHILD=1``); the outer run does not collect them."""

from __future__ import annotations

import os

from hypothesis import settings

PER_KERAS_BACKEND = [
    "test_keras.py",
    "test_equivalence.py",
    "test_porting.py",
    "test_kinds_keras.py",
    "test_precision_keras.py",
    "test_head_keras.py",
    "test_head_from_native_keras.py",
    "test_nonfinite.py",
    "test_head_roundtrip.py",
    "test_ranks_keras.py",
    "test_groups_keras.py",
    "test_blocks_keras.py",
]

collect_ignore = [] if os.environ.get("UPSAMPLE_KERAS_CHILD") == "1" else PER_KERAS_BACKEND

# CI must not depend on a random draw: there hypothesis runs a fixed, derandomized set of examples and keeps
# no example database (the child processes of tests/test_keras_backends.py inherit CI from the environment).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
