"""Every ``python`` code block in README.md and docs/*.md runs: each file's blocks in order, as one
script, in a fresh interpreter (Keras on TensorFlow) inside a temporary folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cases import require_backend

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def script(page: Path) -> str:
    return "\n".join(BLOCK.findall(page.read_text(encoding="utf-8")))


def test_pages_have_snippets() -> None:
    assert sum(bool(script(page)) for page in PAGES) >= 5


@pytest.mark.parametrize("page", [p for p in PAGES if script(p)], ids=lambda p: p.name)
def test_snippets_run(page: Path, tmp_path: Path) -> None:
    code = script(page)
    for name, needle in (("torch", "torch"), ("keras", "keras"), ("flax", "flax")):
        if needle in code:
            require_backend(name)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{page.name} snippets failed:\n{result.stderr[-3000:]}"
