"""The ``upsample`` command for 1-D and 3-D layers: sizes with one or three parts (or ``--spatial-dims``) set the
rank, and plan, inspect (text and PNG) and export work at every rank."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import upsample
from upsample import cli, reference


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plan_reads_the_rank_from_the_size_or_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main(capsys, "plan", "--channels", "8", "--size", "256", "--input-size", "32", "--spatial-dims", "1")
    assert code == 0
    spec = upsample.load_spec(out.split("spec JSON: ")[1])
    assert spec == upsample.UpsampleSpec.for_size(8, (256,), input_size=(32,))  # k16 s8 p4: HiFi-GAN's stage
    assert spec.kernel_size == (16,) and spec.stride == (8,) and spec.crops == ((4, 4),)
    code, out, _ = main(capsys, "plan", "--channels", "8", "--size", "8x8x8", "--mode", "subpixel", "--json")
    assert code == 0
    assert upsample.load_spec(json.loads(out)["spec"]).spatial_dims == 3
    code, out, _ = main(capsys, "plan", "--channels", "8", "--size", "8x8x8", "--head", "--norm", "group", "--json")
    head = upsample.load_spec(out)
    assert code == 0 and head.spatial_dims == 3 and head.output_size() == (8, 8, 8)


def test_inspect_prints_and_draws_a_strip_and_three_slices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    strip, slices = tmp_path / "strip.png", tmp_path / "slices.png"
    code, out, _ = main(
        capsys, *"inspect --channels 4 --kernel 16 --stride 8 --padding 4 --spatial-dims 1 --input-size 3".split(),
        "--png", str(strip),
    )  # fmt: skip
    spec = upsample.UpsampleSpec(4, kernel_size=(16,), stride=8, padding=4)
    counts = "".join(str(n) for n in spec.coverage(3))
    assert code == 0 and counts in out.splitlines()  # one character per pixel, one line
    code, out, _ = main(
        capsys, *"inspect --channels 4 --kernel 3x3x3 --stride 2 --input-size 2".split(), "--png", str(slices)
    )
    assert code == 0 and all(f"{axis} = 2 (of 5):" in out for axis in ("depth", "height", "width"))
    tall, wide = image.imread(strip).shape[:2], image.imread(slices).shape[:2]
    assert tall[1] > 2 * tall[0]  # a strip
    assert wide[1] > 2.5 * wide[0]  # three square panels side by side


def test_export_writes_a_3d_model_that_runs_like_the_reference(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    spec = upsample.SubpixelSpec(2, 3, scale=(2, 1, 2), kernel_size=3, residual="projection")
    (tmp_path / "spec.json").write_text(spec.to_json())
    code, _, err = main(capsys, "export", str(tmp_path / "spec.json"), "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0 and "NCDHW" in err and "dynamic depth, height and width" in err
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 2, 2)).astype(np.float32)
    (y,) = session.run(None, {"x": np.moveaxis(x, -1, 1)})
    expected = reference.forward(spec, upsample.init_weights(spec, seed=0), x)
    np.testing.assert_allclose(np.moveaxis(y, 1, -1), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("argv", "backends", "layout", "shape"),
    [
        ("--channels 3 --size 64 --input-size 8 --spatial-dims 1", "torch,flax-linen", "NLC",
         "2x64x3"),
        ("--mode subpixel --channels 2 --size 4x4x4 --input-size 2 --residual projection", "torch,keras/jax,flax-nnx",
         "NDHWC", "2x4x4x4x2"),
    ],
    ids=["1d", "3d"],
)  # fmt: skip
def test_check_runs_1d_and_3d_specs_in_the_builds(argv: str, backends: str, layout: str, shape: str) -> None:
    """``check`` at ranks 1 and 3 (a subprocess, as users run it): every named build agrees with the reference."""
    for name in {b.split("/")[-1].split("-")[0] for b in backends.split(",")}:
        pytest.importorskip(name)
    command = [sys.executable, "-m", "upsample.cli", "check", *argv.split(), "--backends", backends, "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and f"({layout}), float32" in result.stdout, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1:4] for line in result.stdout.splitlines() if "  pass  " in line}
    assert sorted(rows) == sorted(backends.split(",")), result.stdout
    assert all(status == "pass" and float(err) < 1e-4 and out == shape for status, out, err in rows.values())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("plan --channels 4 --size 4x4x4x4", "--size: expected a positive int, HxW or DxHxW, got '4x4x4x4'"),
        ("plan --channels 4 --size 0x4", "--size: expected a positive int, HxW or DxHxW, got '0x4'"),
        ("plan --channels 4 --size 8x8x8 --input-size 2x2", "size has 3 items and input_size has 2"),
        ("plan --channels 4 --size 8x8 --spatial-dims 3", "size has 2 items but spatial_dims=3"),
        ("plan --channels 4 --size 8 --spatial-dims 4", "--spatial-dims: invalid choice: 4"),
        ("inspect --channels 4 --kernel 3x3x3 --input-size 2x2", "--input-size must be an int or a (d, h, w) triple"),
    ],
)
def test_bad_ranks_are_one_line_errors_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: str, expected: str
) -> None:
    code, _, err = main(capsys, *argv.split())
    assert code == 2 and err.count("\n") == 1 and expected in err, err
