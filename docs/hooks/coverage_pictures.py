"""MkDocs hook: draw the coverage pictures the docs show with ``upsample inspect --png`` at build time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

PICTURES = {
    "torch-trap.png": ["--channels", "64", "--kernel", "3", "--stride", "32", "--padding", "1"],
    "keras-trap.png": ["--channels", "64", "--kernel", "3", "--stride", "16", "--padding", "same"],
    "checkerboard.png": ["--channels", "64", "--kernel", "3", "--stride", "2", "--input-size", "8"],
    "even-overlap.png": ["--channels", "64", "--kernel", "4", "--stride", "2", "--padding", "1", "--input-size", "8"],
    "for-size.png": ["--channels", "64", "--kernel", "16"],
}


def on_pre_build(config: Any) -> None:
    folder = Path(config["docs_dir"]) / "images"
    folder.mkdir(exist_ok=True)
    for name, flags in PICTURES.items():
        command = [sys.executable, "-m", "upsample.cli", "inspect", *flags, "--png", str(folder / name)]
        subprocess.run(command, check=True, capture_output=True)
