"""The ``upsample`` command, run as a subprocess the way users run it (and, for the table of bad
invocations, in this process: an exception escaping ``main`` fails the row with its traceback)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import require_backend, required_backends
from safetensors import safe_open
from safetensors.numpy import save_file

import upsample
from upsample import (
    ResizeSpec,
    SubpixelSpec,
    UpsampleSpec,
    backends,
    cli,
    head_reference,
    init_weights,
    messages,
    plans,
    reference,
    save_weights,
)
from upsample.head_weights import HeadWeights, NormWeights, save_head

MEMORY_LIMIT = 3 << 30
"""Address space of a huge-value row's process: allocating what the input asks for would fail."""


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "upsample.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, input=stdin)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``run`` under :data:`MEMORY_LIMIT` and a timeout; also the seconds it took."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "upsample.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    return result, time.perf_counter() - start


# --- what works -----------------------------------------------------------------------------


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
    assert summary["output_size"] == [8, 8] and summary["dead_pixels"] == 0 and summary["input_size"] == [4, 4]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "subpixel", "--size", "8", "--input-size", "4"], SubpixelSpec(3, scale=2, kernel_size=3)),
        (["--mode", "subpixel", "--size", "8x4"], SubpixelSpec(3, scale=(8, 4), kernel_size=1)),
        (
            ["--mode", "resize", "--method", "bilinear", "--size", "12", "--input-size", "4", "--kernel", "5"],
            ResizeSpec(3, scale=3, method="bilinear", kernel_size=5),
        ),
    ],
)
def test_plan_modes_build_the_spec_of_their_kind(args: list[str], expected: object) -> None:
    summary = json.loads(run("plan", "--channels", "3", *args, "--json").stdout)
    assert upsample.load_spec(summary["spec"]) == expected
    assert summary["output_size"] == list(expected.output_size(summary["input_size"]))  # type: ignore[attr-defined]


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


def test_inspect_resize_mode_from_flags() -> None:
    spec = ResizeSpec(4, scale=(2, 3), method="bilinear", kernel_size=(3, 1), residual="nearest")
    args = ["--mode", "resize", "--channels", "4", "--scale", "2x3", "--method", "bilinear", "--kernel", "3x1"]
    summary = json.loads(run("inspect", *args, "--residual", "nearest", "--input-size", "3", "--json").stdout)
    assert upsample.load_spec(summary["spec"]) == spec and summary["coverage"] == spec.coverage(3).tolist()


def test_inspect_resize_by_a_float_or_to_a_size(tmp_path: Path) -> None:
    spec = ResizeSpec(4, scale=(1.5, 2), method="linear")
    args = ["--mode", "resize", "--channels", "4", "--scale", "1.5x2", "--method", "linear", "--input-size", "5"]
    summary = json.loads(run("inspect", *args, "--json").stdout)
    assert upsample.load_spec(summary["spec"]) == spec and summary["output_size"] == [7, 10]
    assert summary["coverage"] == spec.coverage(5).tolist()
    path = tmp_path / "size.json"
    path.write_text(ResizeSpec(4, size=(7, 9), method="cubic").to_json())
    table = run("inspect", str(path), "--input-size", "3").stdout
    assert "size             7x9" in table and "3x3 -> 7x9" in table and "scale" not in table
    refused = run("inspect", "--mode", "subpixel", "--channels", "4", "--scale", "1.5")
    assert refused.returncode != 0 and "scale must be an int, got 1.5 (float)" in refused.stderr


def test_inspect_reads_a_weights_file_and_big_maps_fit(tmp_path: Path) -> None:
    spec = UpsampleSpec(2, kernel_size=3, stride=2)
    path = tmp_path / "w.safetensors"
    save_weights(path, spec, init_weights(spec))
    result = run("inspect", str(path), "--input-size", "100")
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80 and "block" in result.stdout


def test_input_size_comes_from_the_flag_else_the_file_else_1x1(tmp_path: Path) -> None:
    spec = UpsampleSpec(2, kernel_size=4, stride=2, padding=1)
    weights_path, wrapper_path, bare_path = tmp_path / "w.safetensors", tmp_path / "w.json", tmp_path / "s.json"
    save_weights(weights_path, spec, init_weights(spec), input_size=(4, 6))
    wrapper_path.write_text(json.dumps({"spec": spec.to_dict(), "input_size": [5, 3]}))
    bare_path.write_text(spec.to_json())
    for path, size in ((weights_path, [4, 6]), (wrapper_path, [5, 3]), (bare_path, [1, 1])):
        summary = json.loads(run("inspect", str(path), "--json").stdout)
        assert summary["input_size"] == size and summary["output_size"] == list(spec.output_size(size))
        assert ("recorded in" in summary["input_size_from"]) == (size != [1, 1])
        overridden = json.loads(run("inspect", str(path), "--input-size", "2x7", "--json").stdout)
        assert overridden["input_size"] == [2, 7] and overridden["input_size_from"] == "--input-size"


def test_spec_from_stdin() -> None:
    planned = run("plan", "--channels", "4", "--size", "6", "--input-size", "3", "--json").stdout
    summary = json.loads(run("inspect", "-", "--json", stdin=planned).stdout)
    assert summary["input_size"] == [3, 3] and summary["output_size"] == [6, 6]


def test_inspect_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "coverage.png"
    result = run(
        "inspect", "--channels", "4", "--kernel", "3", "--stride", "16", "--padding", "same", "--png", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"upsample {upsample.__version__}"


def test_a_reader_that_stops_early_is_no_traceback() -> None:
    """``upsample inspect ... --json | head``: the output is far over a pipe's buffer."""
    command = [sys.executable, "-m", "upsample.cli", "inspect", "--channels", "2", "--kernel", "3", "--json"]
    process = subprocess.Popen(
        [*command, "--input-size", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.read(10)
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and stderr == ""


def test_a_full_disk_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "upsample.cli", "plan", "--channels", "4", "--size", "4"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert (
        result.returncode == 2
        and result.stderr == "upsample plan: error: cannot write the output: No space left on device\n"
    )


def test_plan_json_then_check_checks_the_planned_stage(tmp_path: Path) -> None:
    """Issue 14's flow: ``plan --json > plan.json && check plan.json`` checks 4x4 -> 8x8, not 1x1 -> 2x2."""
    from upsample.crosscheck import TARGETS, installed

    plan = tmp_path / "plan.json"
    planned = run("plan", "--channels", "3", "--size", "8", "--input-size", "4", "--residual", "projection", "--json")
    plan.write_text(planned.stdout)
    result = run("check", str(plan), "--quiet", "--json")
    summary = json.loads(result.stdout)
    assert summary["input_size"] == [4, 4] and summary["input_size_from"] == f"recorded in {messages.shown(str(plan))}"
    assert [row["backend"] for row in summary["rows"]] == [t.label for t in TARGETS]
    required = os.environ.get("UPSAMPLE_REQUIRE_BACKENDS", "")
    for target, row in zip(TARGETS, summary["rows"], strict=True):
        if installed(target):
            assert row["status"] == "pass", row
            assert row["error_output"] < 1e-4 and row["output_shape"] == [2, 8, 8, 3]
        else:
            assert not required and row["status"] == "skipped" and "pip install" in row["note"]
    assert summary["ok"] and result.returncode == 0 and result.stderr == ""
    assert "ok: all 64 output pixels live" in summary["coverage"]
    text = run("check", str(plan), "--quiet", "--backends", "torch")
    assert f"4x4 -> 8x8 (input size: recorded in {messages.shown(str(plan))})" in text.stdout


@pytest.mark.parametrize(("mode", "backend"), [("subpixel", "torch"), ("resize", "flax-linen")])
def test_check_modes_pass(mode: str, backend: str) -> None:
    """``check --mode subpixel|resize`` (issue 15), one backend each here (every backend agrees with the
    reference in tests/test_equivalence.py)."""
    pytest.importorskip(backend.split("-")[0])
    args = ["--mode", mode, "--channels", "3", "--size", "8", "--input-size", "4", "--residual", "projection"]
    result = run("check", *args, "--backends", backend, "--quiet", "--json")
    summary = json.loads(result.stdout)
    assert summary["spec"]["kind"] == mode and [row["status"] for row in summary["rows"]] == ["pass"]
    assert summary["rows"][0]["output_shape"] == [2, 8, 8, 3] and result.returncode == 0


def test_check_runs_a_whole_head(tmp_path: Path) -> None:
    """``check HEAD.json``: a planned head (GroupNorm) in two builds, both agreeing with the heads' NumPy
    reference in both modes, gradients and three SGD steps; a head's input size cannot be overridden."""
    require_backend("torch")
    require_backend("flax")
    plan_args = ["--head", "--channels", "64", "--size", "8", "--out-channels", "2", "--mode", "resize"]
    head = run("plan", *plan_args, "--norm", "group", "--final-activation", "tanh", "--json")
    path = tmp_path / "head.json"
    path.write_text(head.stdout)
    result = run("check", str(path), "--backends", "torch,flax-nnx", "--quiet", "--json")
    summary = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert summary["spec"]["kind"] == "head" and summary["steps"] == 3
    assert [(row["backend"], row["status"]) for row in summary["rows"]] == [("torch", "pass"), ("flax-nnx", "pass")]
    assert all(row["output_shape"] == [2, 8, 8, 2] and row["error_trained"] < 1e-5 for row in summary["rows"])
    text = run("check", str(path), "--backends", "torch", "--quiet")
    assert "err steps" in text.stdout and "all backends agree" in text.stdout
    refused = run("check", str(path), "--input-size", "2", "--backends", "torch")
    assert refused.returncode == 2 and "part of its spec" in refused.stderr


def test_bench_quick_prints_ratios() -> None:
    pytest.importorskip("torch")
    result = run("bench", "--quick", "--backends", "torch", "--json")
    rows = json.loads(result.stdout)
    assert {(r["mode"], r["backend"]) for r in rows} == {("forward", "torch"), ("forward_backward", "torch")}
    for row in rows:
        assert row["ours_over_native"] == pytest.approx(row["ours_ms"] / row["native_ms"])
        assert row["ours_over_matmul"] == pytest.approx(row["ours_ms"] / row["matmul_ms"])


@pytest.mark.parametrize(
    "spec",
    [
        UpsampleSpec(3, 5, kernel_size=4, stride=2, padding=1, use_bias=False),
        SubpixelSpec(3, 5, scale=2, kernel_size=3, use_bias=False),
        ResizeSpec(3, 5, scale=3, method="bilinear", kernel_size=(3, 1), use_bias=False),
    ],
)
def test_bench_matmul_has_the_layers_flops(spec: object) -> None:
    from upsample.runners import matmul_shape

    m, k, n = matmul_shape(spec, 2, 4)
    assert 2 * m * k * n == 2 * spec.flops(4)  # type: ignore[attr-defined]


def test_bench_times_every_kind_against_torch_native_layers() -> None:
    """``bench --mode``: the native comparator of each kind computes what ours computes."""
    torch = pytest.importorskip("torch")
    from upsample import bench
    from upsample.runners import torch as runner

    for kind in plans.MODES:
        shape = bench.Shape(2, 4, 6, 8, input_size=4, kind=kind)
        assert shape.spec.to_dict()["kind"] == kind and (kind in shape.label) == (kind != "transposed")
        variants = runner.bench_callables(shape.spec, 2, 4)
        with torch.no_grad():
            native, ours = variants["native"][0](), variants["ours"][0]()
        torch.testing.assert_close(ours, native, rtol=1e-4, atol=1e-5)
        rows = bench.bench_target(bench.select("torch")[0], (shape,), repeats=1, warmup=0)
        assert [row["mode"] for row in rows] == ["forward", "forward_backward"]


@pytest.mark.parametrize("keras_backend", ["jax", "torch", None])
def test_bench_quick_runs_keras_on_the_current_backend_only(monkeypatch, keras_backend: str | None) -> None:
    from upsample import bench

    if keras_backend is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", keras_backend)
    labels = [t.label for t in bench.chosen_targets(None, quick=True)]
    assert labels == ["torch", f"keras/{keras_backend or 'tensorflow'}", "flax-linen", "flax-nnx"]
    assert len(bench.chosen_targets(None, quick=False)) == 6 and len(bench.QUICK_SHAPES) == 1


# --- bad invocations: exit code 2, one line naming the argument and showing the value ---------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bad spec and weights files, and paths a picture cannot be written to."""
    folder = tmp_path_factory.mktemp("bad")
    spec = UpsampleSpec(2, kernel_size=3)
    (folder / "not-utf8.json").write_bytes(b'{"in_channels": \xff\xfe}')
    (folder / "not-json.json").write_text("in_channels: 4")
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "list.json").write_text("[1, 2]")
    (folder / "a-folder").mkdir()
    (folder / "w.safetensors").mkdir()
    (folder / "long-residual.json").write_text(json.dumps({**spec.to_dict(), "residual": "x" * 1_000_000}))
    (folder / "long-int.json").write_text(
        json.dumps(spec.to_dict()).replace('"in_channels": 2', '"in_channels": ' + "9" * 5000)
    )
    with open(folder / "huge.json", "wb") as handle:
        handle.truncate(20 << 20)  # sparse: 20 MiB that take no disk
    (folder / "plan.json").write_text(json.dumps({"spec": spec.to_dict(), "input_size": [4, 4]}))
    (folder / "bad-size.json").write_text(json.dumps({"spec": spec.to_dict(), "input_size": [0, "x" * 10_000]}))
    (folder / "bad-kind.json").write_text(json.dumps({**spec.to_dict(), "kind": "deconv"}))
    far = UpsampleSpec(1, kernel_size=1, padding=((-(10**9), -(10**9)), (0, 0)))
    save_weights(folder / "far-crops.safetensors", far, init_weights(far))
    kernel = {"kernel": np.zeros((1, 1, 1, 1), np.float32)}
    save_file(kernel, folder / "deep-spec.safetensors", {"upsample.format": "1", "upsample.spec": "[" * 5000})
    save_weights(folder / "sized.safetensors", spec, init_weights(spec), input_size=4)
    with safe_open(folder / "sized.safetensors", framework="numpy") as handle:
        metadata = {**handle.metadata(), "upsample.input_size": "9" * 10_000 + "x4"}
    arrays = init_weights(spec)
    save_file({"kernel": arrays.kernel, "bias": arrays.bias}, folder / "bad-size.safetensors", metadata)
    head = upsample.plan(4, 8, out_channels=2, norm="batch")
    (folder / "head.json").write_text(head.to_json())
    save_head(folder / "head.safetensors", head, init_weights(head))
    wrong = {name: np.zeros((1,), np.float32) for name in init_weights(head).flat()}
    save_file(wrong, folder / "bad-head.safetensors", {"upsample.format": "1", "upsample.spec": head.to_json()})
    (folder / "full.png").symlink_to("/dev/full")
    (folder / "a-file").write_text("")
    locked = folder / "locked"
    locked.mkdir(mode=0o500)
    return folder


def _unwritable(folder: Path) -> str:
    """A .png path this process cannot create: a read-only folder, or for root (who may write there) /sys."""
    return str(folder / "locked" / "map.png") if not os.access(folder / "locked", os.W_OK) else "/sys/map.png"


INSPECT = ["inspect", "--channels", "4", "--kernel", "3"]
BAD = [
    # (argv with {dir} for the files fixture, substrings of the one error line)
    (["plan", "--channels", "64", "--size", "16", "--kernel", "3"], ["kernel_size >= 16"]),
    (["plan", "--channels", "0", "--size", "16"], ["in_channels must be positive, got 0"]),
    (["plan", "--channels", "abc", "--size", "16"], ["--channels", "'abc'"]),
    (["plan", "--channels", "4", "--size", "4x4x4x4"], ["--size", "'4x4x4x4'"]),
    (["plan", "--channels", "4", "--size", "0"], ["--size", "expected a positive int, HxW or DxHxW, got '0'"]),
    (
        ["plan", "--mode", "subpixel", "--channels", "4", "--size", "10", "--input-size", "3"],
        ["size 10", "input_size 3"],
    ),
    (["plan", "--mode", "subpixel", "--channels", "4", "--size", "8", "--method", "nearest"], ["--method"]),
    (["plan", "--mode", "warp", "--channels", "4", "--size", "8"], ["--mode", "'warp'"]),
    ([*INSPECT, "--padding", "full"], ["expected same, valid, P, PHxPW, PDxPHxPW or crops", "'full'"]),
    ([*INSPECT, "--padding", "5"], ["output size would be"]),
    ([*INSPECT, "--out-channels", "3", "--residual", "nearest"], ["use residual='projection'"]),
    (["inspect", "--mode", "resize", "--channels", "4", "--stride", "2"], ["--stride", "--mode resize"]),
    (["inspect", "--channels", "4"], ["give a spec file"]),
    (["inspect"], ["give a spec file"]),
    (["inspect", "missing.json"], ["cannot read spec file 'missing.json'"]),
    (["inspect", "{dir}/a-folder"], ["a-folder'", "is a directory"]),
    (["check", "{dir}/w.safetensors"], ["w.safetensors'", "is a directory"]),
    (["inspect", "{dir}/not-utf8.json"], ["not-utf8.json'", "not UTF-8", "0xff"]),
    (["check", "{dir}/not-json.json"], ["not-json.json'", "not valid JSON"]),
    (["check", "{dir}/deep.json"], ["deep.json'", "nested too deeply"]),
    (["inspect", "{dir}/list.json"], ["list.json'", "JSON list"]),
    (["inspect", "{dir}/long-residual.json"], ["long-residual.json'", "residual", "'xxxx"]),
    (["inspect", "{dir}/long-int.json"], ["long-int.json'", "integer of over 4,300 digits"]),
    (["inspect", "{dir}/huge.json"], ["huge.json'", "16,777,216 bytes"]),
    (["inspect", "{dir}/bad-size.json"], ["bad-size.json'", "input_size [0, 'xxx"]),
    (["inspect", "{dir}/bad-kind.json"], ["bad-kind.json'", "'deconv'"]),
    (["inspect", "{dir}/deep-spec.safetensors"], ["deep-spec.safetensors'", "nested too deeply"]),
    (["check", "{dir}/bad-size.safetensors"], ["bad-size.safetensors'", "invalid input size"]),
    (["inspect", "{dir}/plan.json", "--channels", "5"], ["--channels", "plan.json'", "cannot be combined"]),
    (["inspect", "{dir}/plan.json", "--no-bias", "--stride", "2"], ["--stride, --no-bias", "plan.json'"]),
    (["check", "{dir}/plan.json", "--size", "8"], ["--size", "plan.json'", "cannot be combined"]),
    ([*INSPECT, "--png", "{dir}/a-folder"], ["--png", "a-folder'", "is a directory"]),
    ([*INSPECT, "--png", "{dir}/a-file/map.png"], ["--png", "a-file/map.png'", "is not a directory"]),
    ([*INSPECT, "--png", "{dir}/map.jpg"], ["--png", "map.jpg'", "must end in .png"]),
    ([*INSPECT, "--png", "{dir}/full.png"], ["--png", "full.png'", "No space left on device"]),
    ([*INSPECT, "--png", "{unwritable}"], ["--png", "map.png'", "cannot write"]),
    (["check", "--channels", "2", "--size", "4", "--batch", "-1"], ["--batch", "got -1"]),
    (["check", "--channels", "2", "--size", "4", "--seed", "-3"], ["--seed", "got -3"]),
    (["check", "--channels", "2", "--size", "4", "--backends", "caffe"], ["--backends", "'caffe'"]),
    (["bench", "--repeats", "0"], ["--repeats", "got 0"]),
    (["bench", "--warmup", "-1"], ["--warmup", "got -1"]),
    (["bench", "--backends", "caffe"], ["--backends", "'caffe'"]),
    (["bench", "--plot", "{dir}/a-folder"], ["--plot", "a-folder'", "is a directory"]),
    (["plan", "--channels", "4" * 100_000, "--size", "4"], ["--channels", "'4444"]),
    (["inspect", "{dir}/head.safetensors", "--png", "{dir}/map.png"], ["--png draws one layer", "head's stages"]),
    (["inspect", "{dir}/head.json", "--kernel", "3"], ["--kernel", "head.json'", "cannot be combined"]),
    (["inspect", "{dir}/head.json", "--input-size", "600000"], ["output along height would be", "over the limit"]),
    (["inspect", "{dir}/bad-head.safetensors"], ["bad-head.safetensors'", "does not match its own spec"]),
    (["export", "{dir}/bad-head.safetensors", "-o", "{dir}/x.onnx"], ["bad-head.safetensors'", "does not match"]),
    # a misspelled flag is named (with the closest known one) before any missing required flag
    (["plan", "--chanels", "64", "--size", "16"], ["unknown flag --chanels; did you mean --channels?"]),
    (["plan", "--channels=64", "--sise=16"], ["unknown flag --sise; did you mean --size?"]),
    (["inspect", "--strde", "2"], ["unknown flag --strde; did you mean --stride?"]),
    (["check", "--chanels", "4", "--size", "4"], ["unknown flag --chanels; did you mean --channels?"]),
    (["export", "{dir}/head.json", "--onx", "x.onnx"], ["unknown flag --onx; did you mean --onnx?"]),
    (["bench", "--quik"], ["unknown flag --quik; did you mean --quick?"]),
    # a head's flags without --head, and head flags that cannot work
    (["plan", "--channels", "64", "--size", "16", "--norm", "batch"], ["--norm needs --head"]),
    (["plan", "--channels", "64", "--size", "16", "--activation", "tanh"], ["--activation needs --head"]),
    (["plan", "--channels", "64", "--size", "16", "--final-activation", "tanh"], ["--final-activation needs --head"]),
    (["plan", "--channels", "64", "--size", "16", "--head", "--groups", "4"], ["--groups 4", "needs --norm group"]),
    (
        ["plan", "--channels", "32", "--size", "32", "--head", "--norm", "group", "--groups", "32"],
        ["groups=32 does not divide", "stages[1] (16), stages[2] (8)"],
    ),
    (["plan", "--channels", "8", "--size", "16", "--head", "--method", "bilinear"], ["--method", "--mode resize"]),
]


@pytest.mark.parametrize(("argv", "expected"), BAD, ids=[" ".join(argv)[:60] for argv, _ in BAD])
def test_bad_invocation_is_exit_2_and_one_line(
    argv: list[str], expected: list[str], files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [arg.format(dir=files, unwritable=_unwritable(files)) for arg in argv]
    try:
        code = cli.main(args)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1 and len(stderr) < 500, stderr
    for part in expected:
        assert part in stderr, stderr


HUGE = [
    # (argv, substrings): each would allocate GiB to TiB if the command did what it was asked
    (["inspect", "--channels", "8", "--kernel", "1000000000"], ["1000000000x1000000000", "--kernel"]),
    (["inspect", "--channels", "4", "--kernel", "3", "--input-size", "1000000"], ["1000000x1000000 input"]),
    (["inspect", "--channels", "4", "--kernel", "3", "--input-size", "2000", "--png", "x.png"], ["--png picture"]),
    (["inspect", "{dir}/far-crops.safetensors"], ["2000000001x1"]),
    (["check", "{dir}/far-crops.safetensors"], ["output", "4,000,000,002 values"]),
    (["check", "--channels", "100000", "--size", "64"], ["weights", "40,960,000,100,000 values", "--channels"]),
    (["check", "--channels", "4", "--size", "4", "--batch", "1000000000"], ["input", "--batch"]),
    (["plan", "--channels", "8", "--size", "1000000000"], ["1,000,000,000 pixels"]),
]


@pytest.mark.parametrize(("argv", "expected"), HUGE, ids=[" ".join(argv)[:60] for argv, _ in HUGE])
def test_huge_request_fails_fast_without_allocating(argv: list[str], expected: list[str], files: Path) -> None:
    result, seconds = run_limited(*(arg.format(dir=files) for arg in argv))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "out of memory" not in result.stderr
    for part in expected:
        assert part in result.stderr, result.stderr
    assert seconds < 30


def test_export_onnx_then_inspect_the_model(tmp_path: Path) -> None:
    """``upsample export`` writes the planned stage as ONNX (onnxruntime runs it like the reference), and
    ``upsample inspect model.onnx`` lists its ConvTranspose node as that spec; its height and width are
    dynamic, so the size is unknown until ``--input-size`` gives it."""
    if backends.missing_packages(("onnx", "onnxruntime")) and "onnx" not in required_backends():
        pytest.skip('onnx is not installed: pip install "upsample[onnx]"')
    import onnxruntime

    plan = tmp_path / "plan.json"
    plan.write_text(run("plan", "--channels", "4", "--size", "8", "--input-size", "4", "--json").stdout)
    model = tmp_path / "stage.onnx"
    result = run("export", str(plan), "--onnx", str(model), "--seed", "3")
    assert result.returncode == 0, result.stderr
    spec = UpsampleSpec.for_size(4, 8, input_size=4)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 4)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(model))
    (y,) = session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})
    expected = reference.forward(spec, init_weights(spec, seed=3), x)
    np.testing.assert_allclose(y.transpose(0, 2, 3, 1), expected, rtol=1e-4, atol=1e-5)
    listed = json.loads(run("inspect", str(model), "--json").stdout)
    assert [UpsampleSpec.from_dict(entry["spec"]) for entry in listed] == [spec]
    assert listed[0]["input_size"] is None  # the export's height and width are dynamic: the size is unknown
    listed = json.loads(run("inspect", str(model), "--input-size", "4", "--json").stdout)
    assert listed[0]["input_size"] == [4, 4] and listed[0]["dead_pixels"] == 0
    bad = run("export", str(plan), "--onnx", str(tmp_path / "stage.txt"))
    assert bad.returncode == 2 and "--onnx" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_plan_head_prints_the_stages_and_writes_the_stack_spec() -> None:
    """Issue 16: ``plan --head`` is ``upsample.plan``: a table of the stages, ``--json`` the HeadSpec."""
    args = ["plan", "--channels", "512", "--size", "64", "--out-channels", "3", "--head", "--norm", "batch"]
    shown = run(*args, "--final-activation", "tanh")
    assert shown.returncode == 0, shown.stderr
    assert "32x32 -> 64x64" in shown.stdout and "batchnorm + relu" in shown.stdout
    written = run(*args, "--final-activation", "tanh", "--json")
    expected = upsample.plan(512, 64, out_channels=3, norm="batch", final_activation="tanh")
    assert upsample.load_spec(written.stdout) == expected
    refused = run(*args, "--kernel", "3")
    assert refused.returncode == 2 and "--kernel" in refused.stderr and len(refused.stderr.splitlines()) == 1


def _onnx_runtime() -> Any:
    if backends.missing_packages(("onnx", "onnxruntime")) and "onnx" not in required_backends():
        pytest.skip('onnx is not installed: pip install "upsample[onnx]"')
    import onnxruntime

    return onnxruntime


def _run_onnx(model: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX model on NHWC ``x`` (it takes and gives NCHW), in onnxruntime."""
    session = _onnx_runtime().InferenceSession(str(model))
    (y,) = session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})
    return np.asarray(y).transpose(0, 2, 3, 1)


def test_export_a_saved_head_matches_the_reference_in_inference_mode(tmp_path: Path) -> None:
    """``upsample export head.safetensors -o head.onnx`` (``save_head``'s file): onnxruntime computes what the
    heads' NumPy reference computes in inference mode, with the file's running statistics; ``inspect`` prints
    the head's table at the input size its spec records."""
    _onnx_runtime()
    head = upsample.plan(6, 8, out_channels=3, mode="subpixel", norm="batch", final_activation="tanh", input_size=2)
    rng = np.random.default_rng(5)
    norms = tuple(
        None
        if n is None
        else NormWeights(n.scale * 1.5, n.offset + 0.2, rng.normal(0, 0.3, n.scale.shape), n.scale * 2)
        for n in init_weights(head, seed=1).norms
    )
    weights = HeadWeights(init_weights(head, seed=1).stages, norms).astype(np.float32)
    saved, model = tmp_path / "head.safetensors", tmp_path / "head.onnx"
    save_head(saved, head, weights)
    result = run("export", str(saved), "-o", str(model))
    assert result.returncode == 0 and "2x2 (recorded in" in result.stderr and "its weights" in result.stderr, result
    x = rng.normal(size=(3, 2, 2, 6)).astype(np.float32)
    want, _ = head_reference.forward(head, weights, x.astype(np.float64), training=False)
    np.testing.assert_allclose(_run_onnx(model, x), want, rtol=1e-4, atol=1e-5)
    shown = run("inspect", str(saved))
    assert shown.returncode == 0 and shown.stdout.startswith(head.table()), shown
    summary = json.loads(run("inspect", str(saved), "--json").stdout)
    assert upsample.load_spec(summary["spec"]) == head and summary["input_size"] == [2, 2] and summary["ok"]
    assert [stage["input_size"] for stage in summary["stages"]] == [list(size) for size in head.stage_sizes()[:-1]]


def test_export_a_head_spec_json_with_seeded_weights(tmp_path: Path) -> None:
    """``plan --head --json > head.json`` then ``export head.json``: the head with ``init_weights(seed)``
    weights, at the size the HeadSpec records or ``--input-size``."""
    _onnx_runtime()
    planned = tmp_path / "head.json"
    args = ["--channels", "64", "--size", "8", "--out-channels", "2", "--norm", "group", "--input-size", "2"]
    planned.write_text(run("plan", "--head", *args, "--activation", "gelu", "--json").stdout)
    head = upsample.load_spec(planned.read_text())
    model = tmp_path / "head.onnx"
    result = run("export", str(planned), "--onnx", str(model), "--seed", "3", "--input-size", "4")
    assert result.returncode == 0 and "init_weights(seed=3)" in result.stderr, result.stderr
    x = np.random.default_rng(6).normal(size=(2, 4, 4, 64)).astype(np.float32)
    want, _ = head_reference.forward(head, init_weights(head, seed=3), x.astype(np.float64))
    assert want.shape == (2, 16, 16, 2)
    np.testing.assert_allclose(_run_onnx(model, x), want, rtol=1e-4, atol=1e-5)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``upsample argv`` in this process: its stdout (exit code 0 asserted)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_plan_head_group_norm_chooses_groups_and_shows_them(capsys: pytest.CaptureFixture[str]) -> None:
    """``--norm group`` without ``--groups`` plans a head that builds; the table names the group count."""
    args = ("plan", "--head", "--channels", "32", "--size", "32", "--out-channels", "3", "--norm", "group")
    head = upsample.load_spec(_cli(capsys, *args, "--json"))
    normed = [stage.out_channels for stage in head.stages[:-1]]
    assert normed == [32, 16, 8]
    assert all(c % head.norm.groups == 0 for c in normed)  # and no larger count up to 32 divides them all:
    assert not [g for g in range(head.norm.groups + 1, 33) if all(c % g == 0 for c in normed)]
    assert "norm: groupnorm, 8 groups, epsilon 1e-05" in _cli(capsys, *args)
    chosen = upsample.load_spec(_cli(capsys, *args, "--groups", "4", "--json"))
    assert chosen.norm.groups == 4
    assert "momentum 0.1" in _cli(capsys, *args[:-1], "batch")


@pytest.mark.parametrize("norm", ["instance", "layer"])
def test_plan_head_takes_every_norm_and_names_it(capsys: pytest.CaptureFixture[str], norm: str) -> None:
    """``--norm instance|layer`` with ``--activation silu`` reaches the spec, and the table's norm line names
    that norm (not BatchNorm's momentum)."""
    args = ("plan", "--head", "--channels", "16", "--size", "16", "--norm", norm, "--activation", "silu")
    head = upsample.load_spec(_cli(capsys, *args, "--json"))
    assert head.norm.kind == norm and head.activation.kind == "silu"
    assert f"norm: {norm}norm, epsilon 1e-05" in _cli(capsys, *args)


def test_plan_head_method_and_no_bias_reach_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """``--method bilinear`` makes bilinear resize stages, ``--no-bias`` stages without a bias (the JSON said
    nearest and biased whatever was given)."""
    args = ("plan", "--head", "--channels", "16", "--size", "16", "--mode", "resize", "--json")
    head = upsample.load_spec(_cli(capsys, *args, "--method", "bilinear", "--no-bias"))
    resize = [stage for stage in head.stages if isinstance(stage, ResizeSpec)]
    assert len(resize) == 2 and all(stage.method == "linear" for stage in resize)
    assert not any(stage.use_bias for stage in head.stages)
    assert all(shape is None for name, shape in head.weight_shapes().items() if name.endswith(".bias"))
    summary = json.loads(_cli(capsys, "plan", "--channels", "4", "--size", "8", "--no-bias", "--json"))
    layer = upsample.load_spec(summary["spec"])
    assert layer.use_bias is False and layer.weight_shapes()["bias"] is None
