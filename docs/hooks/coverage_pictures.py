"""MkDocs hook: draw the docs' pictures at build time: coverage maps with ``upsample inspect --png``, and
the training comparison of docs/choosing-an-upsampler.md with ``training_pictures.py`` (run beside them)."""

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
    "subpixel-coverage.png": ["--mode", "subpixel", "--channels", "64", "--scale", "2", "--input-size", "8"],
    "resize-coverage.png": ["--mode", "resize", "--channels", "64", "--scale", "2", "--input-size", "8"],
}
TRAINING_PICTURE = "training.png"


def on_pre_build(config: Any) -> None:
    folder = Path(config["docs_dir"]) / "images"
    folder.mkdir(exist_ok=True)
    # The training picture takes the longest: it runs in its own process while the coverage maps are drawn.
    script = Path(__file__).with_name("training_pictures.py")
    command = [sys.executable, str(script), str(folder / TRAINING_PICTURE)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as training:
        for name, flags in PICTURES.items():
            command = [sys.executable, "-m", "upsample.cli", "inspect", *flags, "--png", str(folder / name)]
            subprocess.run(command, check=True, capture_output=True)
        _, errors = training.communicate()
    if training.returncode != 0:
        raise RuntimeError(f"{script.name} failed with exit status {training.returncode}:\n{errors[-3000:]}")
