"""The ``upsample`` command, run as a subprocess the way users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from upsample import UpsampleSpec, init_weights, save_weights


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "upsample.cli", *args], capture_output=True, text=True, timeout=120)


def test_plan_prints_spec_size_cost_and_verdict() -> None:
    result = run("plan", "--channels", "64", "--size", "16", "--residual", "nearest")
    assert result.returncode == 0, result.stderr
    assert "1x1 -> 16x16" in result.stdout and "ok: all 256 output pixels live" in result.stdout
    spec = UpsampleSpec.for_size(64, 16, residual="nearest")
    assert f"{spec.num_params:,}" in result.stdout and f"{spec.flops(1):,}" in result.stdout


def test_plan_json_is_the_spec() -> None:
    result = run("plan", "--channels", "8", "--size", "8", "--input-size", "4", "--json")
    summary = json.loads(result.stdout)
    assert UpsampleSpec.from_dict(summary["spec"]) == UpsampleSpec(8, kernel_size=4, stride=2, padding=1)
    assert summary["output_size"] == [8, 8] and summary["dead_pixels"] == 0


def test_inspect_draws_the_keras_trap() -> None:
    result = run("inspect", "--channels", "64", "--kernel", "3", "--stride", "16", "--padding", "same")
    assert result.returncode == 0, result.stderr
    map_lines = [line for line in result.stdout.splitlines() if set(line) <= set("#123456789+") and line]
    assert len(map_lines) == 16 and all(len(line) == 16 for line in map_lines)
    assert sum(line.count("#") for line in map_lines) == 247
    assert map_lines[0].startswith("111#") and "247 of 256 output pixels are dead" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_inspect_json_coverage_equals_spec(tmp_path: Path) -> None:
    spec = UpsampleSpec(2, kernel_size=3, stride=2, padding=((0, 1), (1, -1)))
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    summary = json.loads(run("inspect", str(path), "--input-size", "3x2", "--json").stdout)
    assert summary["coverage"] == spec.coverage((3, 2)).tolist()


def test_inspect_reads_a_weights_file_and_big_maps_fit(tmp_path: Path) -> None:
    spec = UpsampleSpec(2, kernel_size=3, stride=2)
    path = tmp_path / "w.safetensors"
    save_weights(path, spec, init_weights(spec))
    result = run("inspect", str(path), "--input-size", "100")
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80 and "block" in result.stdout


def test_inspect_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "coverage.png"
    result = run(
        "inspect", "--channels", "4", "--kernel", "3", "--stride", "16", "--padding", "same", "--png", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--channels", "64", "--size", "16", "--kernel", "3"], "kernel_size >= 16"),
        (["plan", "--channels", "0", "--size", "16"], "in_channels must be positive, got 0"),
        (
            ["inspect", "--channels", "4", "--kernel", "3", "--padding", "full"],
            "expected same, valid, P, PHxPW or crops top,bottom,left,right, got 'full'",
        ),
        (["inspect", "--channels", "4", "--kernel", "3", "--padding", "5"], "output size would be"),
        (["inspect", "missing.json"], "cannot read spec file 'missing.json'"),
        (["inspect"], "give a spec file"),
        (
            ["inspect", "--channels", "4", "--out-channels", "3", "--kernel", "2", "--residual", "nearest"],
            "use residual='projection'",
        ),
    ],
)
def test_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_weights_file_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    result = run("inspect", str(path))
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_reports_every_backend() -> None:
    import os

    from upsample.check import TARGETS, installed

    result = run("check", "--channels", "3", "--size", "4", "--residual", "projection", "--json")
    summary = json.loads(result.stdout)
    assert [row["backend"] for row in summary["rows"]] == [t.label for t in TARGETS]
    required = os.environ.get("UPSAMPLE_REQUIRE_BACKENDS", "")
    for target, row in zip(TARGETS, summary["rows"], strict=True):
        if installed(target):
            assert row["status"] == "pass", row
            assert row["error_output"] < 1e-4 and row["output_shape"] == [2, 4, 4, 3]
        else:
            assert not required and row["status"] == "skipped" and "pip install" in row["note"]
    assert summary["ok"] and result.returncode == 0
    assert "ok: all 16 output pixels live" in summary["coverage"]


def test_bench_quick_prints_ratios() -> None:
    pytest.importorskip("torch")
    result = run("bench", "--quick", "--backends", "torch", "--repeats", "2", "--warmup", "1", "--json")
    rows = json.loads(result.stdout)
    assert {(r["mode"], r["backend"]) for r in rows} == {("forward", "torch"), ("forward_backward", "torch")}
    for row in rows:
        assert row["ours_over_native"] == pytest.approx(row["ours_ms"] / row["native_ms"])
        assert row["ours_over_matmul"] == pytest.approx(row["ours_ms"] / row["matmul_ms"])


def test_bench_rejects_unknown_backend() -> None:
    result = run("bench", "--backends", "caffe")
    assert result.returncode == 2 and "got unknown caffe" in result.stderr
