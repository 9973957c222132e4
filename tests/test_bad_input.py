"""Bad input everywhere (issue 13): a table of calls that must fail with our error (type, the argument
named, the value shown and bounded), never the framework's; calls that ask for huge work fail before
allocating; corrupted weights files are a clean error or an exact load; drawn spec arguments give a
spec or a TypeError/ValueError naming an argument.

The CLI's rows are in tests/test_cli.py; Keras's run per Keras backend in tests/test_keras.py.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import require_backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import upsample
from upsample import UpsampleSpec, Weights, WeightsFileError, cli_inputs, init_weights, load_weights, save_weights

MESSAGE_LIMIT = 600  # characters: a message repeats received values bounded (upsample.messages.LIMIT each)
HUGE = "x" * 1_000_000
SPEC = UpsampleSpec(3, 4, kernel_size=2)


def _weights() -> Weights:
    return init_weights(SPEC)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _file(tmp: Path, spec_json: str) -> Path:
    """A safetensors file with the given spec metadata and a valid kernel for SPEC."""
    from safetensors.numpy import save_file

    path = tmp / "file.safetensors"
    save_file({"kernel": _weights().kernel}, str(path), {"upsample.format": "1", "upsample.spec": spec_json})
    return path


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _torch() -> Any:
    require_backend("torch")
    import torch

    from upsample.backends import torch as ut

    return torch, ut


def _flax() -> Any:
    require_backend("flax")
    import flax.linen as nn
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf

    return nn, nnx, jnp, uf


def _with_spec(**changes: Any) -> Callable[[Path], Any]:
    return lambda tmp: UpsampleSpec(**{"in_channels": 3, "out_channels": 4, "kernel_size": 2, **changes})


def _json(**changes: Any) -> str:
    return json.dumps({**SPEC.to_dict(), **changes})


# id -> (call taking a temporary directory, exception type, regexes the message must match)
ROWS: dict[str, tuple[Callable[[Path], Any], type[BaseException], tuple[str, ...]]] = {
    # spec construction
    "in_channels-zero": (_with_spec(in_channels=0), ValueError, ("in_channels must be positive, got 0",)),
    "in_channels-str": (_with_spec(in_channels="4"), TypeError, ("in_channels must be an int", "'4'")),
    "in_channels-bool": (_with_spec(in_channels=True), TypeError, ("in_channels must be an int", "a bool")),
    "in_channels-float": (_with_spec(in_channels=3.0), TypeError, ("in_channels must be an int", "3.0")),
    "in_channels-huge-str": (_with_spec(in_channels=HUGE), TypeError, ("in_channels must be an int", "xxx")),
    "out_channels-negative": (_with_spec(out_channels=-1), ValueError, ("out_channels must be positive, got -1",)),
    "kernel-four": (_with_spec(kernel_size=(3, 3, 3, 3)), ValueError, ("kernel_size has 4 items", "1, 2 or 3")),
    "kernel-rank": (_with_spec(kernel_size=(3, 3, 3), spatial_dims=2), ValueError, ("spatial_dims=2",)),
    "kernel-matrix": (_with_spec(kernel_size=np.ones((2, 2), int)), TypeError, ("kernel_size must be an int",)),
    "kernel-float": (_with_spec(kernel_size=2.5), TypeError, ("kernel_size must be an int", "2.5")),
    "kernel-item": (_with_spec(kernel_size=(3, "3")), TypeError, (r"kernel_size\[1\] must be an int", "'3'")),
    "kernel-huge-list": (_with_spec(kernel_size=list(range(10**6))), ValueError, ("kernel_size", "1000000 items")),
    "stride-zero": (_with_spec(stride=0), ValueError, ("stride must be positive, got 0",)),
    "padding-word": (_with_spec(padding="full"), ValueError, ("padding must be", "'full'")),
    "padding-huge-word": (_with_spec(padding=HUGE), ValueError, ("padding must be", r"'xxx")),
    "padding-three": (
        _with_spec(padding=(1, 2, 3), kernel_size=(2, 2)),
        ValueError,
        ("kernel_size has 2 items and padding has 3",),
    ),
    "padding-crop-short": (_with_spec(padding=((1, 2), (3,))), ValueError, (r"padding\[1\] \(crop\)",)),
    "padding-negative": (_with_spec(padding=-1), ValueError, ("padding must be >= 0, got -1",)),
    "output_padding-negative": (_with_spec(output_padding=-1), ValueError, ("output_padding must be >= 0",)),
    "residual-word": (_with_spec(residual="linear"), ValueError, ("residual must be", "'linear'")),
    "residual-huge": (_with_spec(residual=HUGE), ValueError, ("residual must be", "'xxx")),
    "residual-list": (_with_spec(residual=["nearest"]), ValueError, ("residual must be", r"\['nearest'\]")),
    "residual-channels": (_with_spec(residual="nearest"), ValueError, ("in_channels == out_channels", "projection")),
    "use_bias-str": (_with_spec(use_bias="yes"), TypeError, ("use_bias must be a bool", "'yes'")),
    "use_bias-int": (_with_spec(use_bias=1), TypeError, ("use_bias must be a bool", "1")),
    "crops-and-padding": (_with_spec(crops=((0, 0), (0, 0)), padding=1), ValueError, ("crops or padding",)),
    "crops-shape": (_with_spec(crops=(1, 2)), ValueError, ("crops must be", r"\(1, 2\)")),
    # geometry and diagnosis
    "output-empty": (lambda tmp: UpsampleSpec(2, padding=1).output_size(1), ValueError, ("output size would be",)),
    "input_size-zero": (lambda tmp: SPEC.output_size(0), ValueError, ("input_size must be positive, got 0",)),
    "input_size-str": (lambda tmp: SPEC.diagnose("big"), TypeError, ("input_size must be an int", "'big'")),
    "diagnose-huge-kernel": (
        lambda tmp: UpsampleSpec(4, kernel_size=10**9).diagnose(1),
        ValueError,
        ("output along height would be 1,000,000,000 pixels", r"MAX_AXIS\); because of kernel_size=1000000000$"),
    ),
    "coverage-huge-input": (
        lambda tmp: UpsampleSpec(4, kernel_size=3, stride=2).coverage(10**6),
        ValueError,
        ("coverage map would be", r"67,108,864 \(upsample.limits.MAX_PIXELS\); because of input_size=1000000$"),
    ),
    "coverage-cause-two": (
        lambda tmp: UpsampleSpec(1, kernel_size=2, stride=10**5).coverage((100, 1)),
        ValueError,
        ("output along height would be 9,900,002", r"because of stride=100000 and input_size=\(100, 1\) together$"),
    ),
    "diagnose-cause-crops": (
        lambda tmp: UpsampleSpec(1, padding=((-(10**9), 0), (0, 0))).diagnose(1),
        ValueError,
        (r"because of crops=\(\(-1000000000, 0\), \(0, 0\)\) \(padding and output_padding as crops\)$",),
    ),
    "subpixel-cause-scale": (
        lambda tmp: upsample.SubpixelSpec(1, scale=(3, 10**7)).diagnose(1),
        ValueError,
        ("output along width would be 10,000,000 pixels", r"because of scale=\(3, 10000000\)$"),
    ),
    "resize-cause-scale": (
        lambda tmp: upsample.ResizeSpec(1, scale=10**4).coverage(1),
        ValueError,
        ("coverage map would be 100,000,000 pixels", r"because of scale=10000$"),
    ),
    "cli-map-cause": (
        lambda tmp: cli_inputs.refuse_big_map(UpsampleSpec(4, kernel_size=3000), (1, 1), 1 << 22, "the coverage map"),
        cli_inputs.UsageError,
        (r"over the limit of 4,194,304 \(because of kernel_size=3000\); use a smaller",),
    ),
    "cli-check-cause": (
        lambda tmp: cli_inputs.refuse_big_check(upsample.SubpixelSpec(2, scale=2000), 1, (1, 1)),
        cli_inputs.UsageError,
        (r"the weights would have", r"\(because of scale=2000\); use fewer"),
    ),
    "for_size-unreachable": (
        lambda tmp: UpsampleSpec.for_size(4, 16, kernel_size=3),
        ValueError,
        ("cannot reach 16 pixels", "kernel_size >= 16"),
    ),
    # JSON and dicts
    "json-broken": (lambda tmp: UpsampleSpec.from_json("{"), ValueError, ("not valid JSON",)),
    "json-nested": (lambda tmp: UpsampleSpec.from_json(_nested(100_000)), ValueError, ("nested too deeply",)),
    "json-long": (lambda tmp: UpsampleSpec.from_json(" " * (2 << 20)), ValueError, ("characters long",)),
    "json-none": (lambda tmp: UpsampleSpec.from_json(None), TypeError, ("spec JSON must be text",)),
    "json-kernel-str": (lambda tmp: UpsampleSpec.from_json(_json(kernel_size="3")), TypeError, ("kernel_size",)),
    "dict-kernel-int": (lambda tmp: UpsampleSpec.from_dict({**SPEC.to_dict(), "kernel_size": 3}), None, ()),
    "dict-unknown-huge": (
        lambda tmp: UpsampleSpec.from_dict({**SPEC.to_dict(), HUGE: 1}),
        ValueError,
        ("unknown spec keys",),
    ),
    "dict-missing": (lambda tmp: UpsampleSpec.from_dict({"version": 1}), ValueError, ("missing keys",)),
    "dict-version": (lambda tmp: UpsampleSpec.from_json(_json(version=7)), ValueError, ("version 7",)),
    "dict-list": (lambda tmp: UpsampleSpec.from_dict([1, 2]), TypeError, ("must be a mapping, got list",)),
    "load_spec-kind": (lambda tmp: upsample.load_spec(_json(kind="fancy")), ValueError, ("spec kind", "'fancy'")),
    "load_spec-number": (lambda tmp: upsample.load_spec(b"12"), TypeError, ("JSON object or mapping, got int",)),
    # weights
    "init-dict": (lambda tmp: init_weights(SPEC.to_dict()), TypeError, ("spec must be an upsample spec", "dict")),
    "init-scheme": (lambda tmp: init_weights(SPEC, scheme="magic"), ValueError, ("scheme must be", "'magic'")),
    "init-seed": (lambda tmp: init_weights(SPEC, seed=-1), ValueError, ("seed must be a non-negative int",)),
    "init-huge": (
        lambda tmp: init_weights(UpsampleSpec(10**5, 10**5, kernel_size=64)),
        ValueError,
        (
            "the weights of UpsampleSpec would be",
            "GiB",
            r"268,435,456 \(upsample.limits.MAX_WEIGHT_VALUES\)",
            "because of in_channels=100000, out_channels=100000 and kernel_size=64 together$",
        ),
    ),
    "init-cause-kernel": (
        lambda tmp: init_weights(UpsampleSpec(1, 1, kernel_size=1000000000)),
        ValueError,
        ("the weights of UpsampleSpec would be", "because of kernel_size=1000000000$"),
    ),
    "init-cause-scale": (
        lambda tmp: init_weights(upsample.SubpixelSpec(1, scale=10**5)),
        ValueError,
        ("the weights of SubpixelSpec would be", "because of scale=100000$"),
    ),
    "check-shape": (
        lambda tmp: Weights(np.zeros((1, 1, 3, 4), np.float32)).check(SPEC),
        ValueError,
        ("weights.kernel has shape", r"\(2, 2, 3, 4\)"),
    ),
    "check-int": (
        lambda tmp: Weights(np.zeros((2, 2, 3, 4), int), np.zeros(4, np.float32)).check(SPEC),
        TypeError,
        ("weights.kernel must be a floating array",),
    ),
    "save-dict": (
        lambda tmp: save_weights(tmp / "w.safetensors", SPEC, {"kernel": 1}),
        TypeError,
        ("weights must be an upsample.Weights, got dict",),
    ),
    "save-input_size": (
        lambda tmp: save_weights(tmp / "w.safetensors", SPEC, _weights(), input_size=-2),
        ValueError,
        ("input_size must be positive",),
    ),
    "load-directory": (lambda tmp: load_weights(tmp), WeightsFileError, ("is a directory",)),
    "load-missing": (lambda tmp: load_weights(tmp / "no.safetensors"), FileNotFoundError, ("does not exist",)),
    "load-garbage": (
        lambda tmp: load_weights(_written(tmp / "g.safetensors", b"\x00" * 50)),
        WeightsFileError,
        ("is not a readable safetensors file",),
    ),
    "load-nested-spec": (
        lambda tmp: load_weights(_file(tmp, _nested(5000))),
        WeightsFileError,
        ("nested too deeply",),
    ),
    "load-huge-residual": (
        lambda tmp: load_weights(_file(tmp, _json(residual=HUGE))),
        WeightsFileError,
        ("invalid spec", "residual must be"),
    ),
    "build-backend": (lambda tmp: SPEC.build("caffe"), ValueError, ("backend must be one of", "'caffe'")),
    "build-dict": (lambda tmp: SPEC.build("torch", weights={"kernel": 0}), TypeError, ("weights must be",)),
    # torch
    "torch-spec-dict": (lambda tmp: _torch()[1].Upsample(SPEC.to_dict()), TypeError, ("spec must be", "load_spec")),
    "torch-set-dict": (
        lambda tmp: _torch()[1].set_weights(_torch()[1].Upsample(SPEC), {"kernel": 0}),
        TypeError,
        ("weights must be an upsample.Weights, got dict",),
    ),
    "torch-numpy-x": (
        lambda tmp: _torch()[1].Upsample(SPEC)(np.zeros((1, 3, 1, 1), np.float32)),
        TypeError,
        ("x must be a torch.Tensor, got ndarray",),
    ),
    "torch-channels": (
        lambda tmp: _torch()[1].Upsample(SPEC)(_torch()[0].zeros(1, 1, 1, 3)),
        ValueError,
        ("expected NCHW with C=3", r"\(1, 1, 1, 3\)", "is this NHWC"),
    ),
    "torch-rank": (
        lambda tmp: _torch()[1].Upsample(SPEC)(_torch()[0].zeros(2, 3)),
        ValueError,
        ("rank-4 NCHW", "rank-3 CHW", r"\(2, 3\)"),
    ),
    "torch-int": (
        lambda tmp: _torch()[1].Upsample(SPEC)(_torch()[0].zeros(1, 3, 1, 1, dtype=_torch()[0].int64)),
        TypeError,
        ("floating dtype", "int64"),
    ),
    "torch-float64": (
        lambda tmp: _torch()[1].Upsample(SPEC)(_torch()[0].zeros(1, 3, 2, 2, dtype=_torch()[0].float64)),
        TypeError,
        ("torch.float64", "torch.float32"),
    ),
    "torch-huge-output": (
        lambda tmp: _torch()[1].Upsample(UpsampleSpec(1, padding=((-(10**9), 0), (0, 0))))(
            _torch()[0].zeros(1, 1, 1, 1)
        ),
        ValueError,
        ("output along height would be", r"because of crops=\(\(-1000000000, 0\), \(0, 0\)\)"),
    ),
    "torch-cause-input": (
        lambda tmp: _torch()[1].Upsample(UpsampleSpec(1, kernel_size=2, stride=2))(_torch()[0].zeros(1, 1, 600_000)),
        ValueError,
        ("output along width would be 1,200,000", r"stride=2 and the input x of shape \(1, 1, 600000\) together$"),
    ),
    "torch-huge-layer": (
        lambda tmp: _torch()[1].Upsample(UpsampleSpec(10**5, 10**5, kernel_size=64)),
        ValueError,
        ("weights of UpsampleSpec would be", "because of in_channels=100000, out_channels=100000 and kernel_size"),
    ),
    "torch-cause-weights": (
        lambda tmp: _torch()[1].Subpixel(upsample.SubpixelSpec(1, scale=10**5)),
        ValueError,
        ("weights of SubpixelSpec would be", "because of scale=100000$"),
    ),
    "torch-unbatched-channels": (
        lambda tmp: _torch()[1].Upsample(SPEC)(_torch()[0].zeros(2, 1, 5)),
        ValueError,
        (r"x: expected CHW with C=3, got shape \(2, 1, 5\)$",),
    ),
    "torch-unbatched-layout": (
        lambda tmp: _torch()[1].Upsample(SPEC)(_torch()[0].zeros(1, 1, 3)),
        ValueError,
        (r"x: expected CHW with C=3, got shape \(1, 1, 3\): is this HWC\?$",),
    ),
    "torch-head-unbatched": (
        lambda tmp: upsample.plan(3, 8).build("torch")(_torch()[0].zeros(5, 1, 1)),
        ValueError,
        (r"x: expected CHW with C=3, got shape \(5, 1, 1\)$",),
    ),
    "torch-lazy": (
        lambda tmp: _torch()[1].from_native(_torch()[0].nn.LazyConvTranspose2d(4, 3)),
        ValueError,
        ("not initialised yet",),
    ),
    "torch-native-type": (
        lambda tmp: _torch()[1].from_native(_torch()[0].nn.Conv2d(3, 4, 3)),
        TypeError,
        ("module must be one of: .*nn.ConvTranspose1d/2d/3d .*nn.Sequential", "got Conv2d$"),
    ),
    # flax
    "linen-spec-dict": (lambda tmp: _flax()[3].Upsample(SPEC.to_dict()), TypeError, ("spec must be", "dict")),
    "nnx-spec-dict": (
        lambda tmp: _flax()[3].UpsampleNNX(SPEC.to_dict(), rngs=_flax()[1].Rngs(0)),
        TypeError,
        ("spec must be", "dict"),
    ),
    "flax-set-dense": (
        lambda tmp: _flax()[3].set_weights(_flax()[0].Dense(4), _weights()),
        TypeError,
        ("layer must be", "Dense"),
    ),
    "flax-get-dense": (lambda tmp: _flax()[3].get_weights(_flax()[0].Dense(4)), TypeError, ("layer must be", "Dense")),
    "nnx-set-dict": (
        lambda tmp: _flax()[3].set_weights(SPEC.build("nnx"), {"kernel": 0}),
        TypeError,
        ("weights must be an upsample.Weights, got dict",),
    ),
    "nnx-channels": (
        lambda tmp: SPEC.build("nnx")(_flax()[2].zeros((1, 1, 1, 5))),
        ValueError,
        ("expected NHWC with C=3", r"\(1, 1, 1, 5\)"),
    ),
    "nnx-unbatched-channels": (
        lambda tmp: SPEC.build("nnx")(_flax()[2].zeros((1, 1, 5))),
        ValueError,
        (r"x: expected HWC with C=3, got shape \(1, 1, 5\)$",),
    ),
    "linen-unbatched-layout": (
        lambda tmp: SPEC.build("flax")(_flax()[2].zeros((3, 1, 1))),
        ValueError,
        (r"x: expected HWC with C=3, got shape \(3, 1, 1\): is this CHW\?$",),
    ),
    "linen-head-unbatched": (
        lambda tmp: upsample.plan(3, 8).build("flax")(_flax()[2].zeros((1, 1, 4))),
        ValueError,
        (r"x: expected HWC with C=3, got shape \(1, 1, 4\)$",),
    ),
    "nnx-cause-input": (
        lambda tmp: UpsampleSpec(1, kernel_size=2, stride=2).build("nnx")(_flax()[2].zeros((600_000, 1, 1))),
        ValueError,
        (r"because of stride=2 and the input x of shape \(600000, 1, 1\) together$",),
    ),
    "linen-list-x": (lambda tmp: SPEC.build("flax")([[1.0]]), TypeError, ("x must be an array, got list",)),
    "nnx-int": (
        lambda tmp: SPEC.build("nnx")(_flax()[2].zeros((1, 1, 1, 3), int)),
        TypeError,
        ("floating dtype", "int32"),
    ),
}


@pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")
@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_table(row: str, tmp_path: Path) -> None:
    call, error, patterns = ROWS[row]
    if error is None:  # a form that used to be refused with a foreign error and is now accepted
        assert call(tmp_path) is not None
        return
    with pytest.raises(error) as raised:
        call(tmp_path)
    message = str(raised.value)
    assert len(message) <= MESSAGE_LIMIT, f"{row}: a {len(message)}-character message"
    for pattern in patterns:
        assert raised.match(pattern), f"{row}: {pattern!r} not in {message[:300]!r}"


def test_the_table_covers_every_class() -> None:
    assert len(ROWS) >= 60


HUGE_ROWS = [row for row in ROWS if "huge" in row or row in ("json-nested", "load-nested-spec", "json-long")]


@pytest.mark.parametrize("row", HUGE_ROWS)
def test_huge_requests_fail_before_allocating(row: str) -> None:
    """Each huge-value row in a fresh process with a 3 GiB address-space limit: it must raise our error,
    within seconds, having grown the process by less than 64 MiB."""
    if row.startswith("torch"):
        require_backend("torch")
    script = textwrap.dedent(
        f"""
        import resource, sys, time, pathlib, tempfile
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_bad_input as table
        call, error, _ = table.ROWS[{row!r}]
        if {row!r}.startswith("torch"):
            import torch  # loaded before measuring: the framework's own size is not the row's
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            call(pathlib.Path(tempfile.mkdtemp()))
        except error:
            pass
        else:
            sys.exit("no error")
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(f"{{grown:.1f}} MiB {{time.perf_counter() - start:.2f}} s")
        """
    )
    limit = 3 << 30 if not row.startswith("torch") else resource.RLIM_INFINITY

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, preexec_fn=cap, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grown, _, seconds, _ = result.stdout.split()
    assert float(grown) < 64 and float(seconds) < 10, result.stdout


# --- weights files: seeded mutations -------------------------------------------------------------


def _parse_safetensors(data: bytes) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """An independent reader of the safetensors format (8-byte little-endian header length, a JSON header
    of dtype, shape and byte offsets per tensor, then the data); raises on anything malformed."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    metadata = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
    tensors = {}
    end_of_data = 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        start, stop = entry["data_offsets"]
        dtype = np.dtype(dtypes[entry["dtype"]])
        if start != end_of_data or stop - start != dtype.itemsize * int(np.prod(entry["shape"])):
            raise ValueError("offsets")
        end_of_data = stop
        tensors[name] = np.frombuffer(body[start:stop], dtype).reshape(entry["shape"])
    if end_of_data != len(body):
        raise ValueError("trailing bytes")
    return metadata, tensors


def test_mutated_weights_files_fail_cleanly_or_load_exactly(tmp_path: Path) -> None:
    spec = UpsampleSpec(3, 2, kernel_size=2, stride=2, residual="projection")
    original = tmp_path / "w.safetensors"
    save_weights(original, spec, init_weights(spec, seed=3), input_size=4)
    data = original.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "loaded": 0}
    for trial in range(300):
        mutated = bytearray(data)
        if trial % 3 == 0:
            mutated = mutated[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                position = int(rng.integers(0, len(mutated)))
                mutated[position] = int(rng.integers(0, 256))
        path = tmp_path / f"m{trial}.safetensors"
        path.write_bytes(bytes(mutated))
        try:
            loaded_spec, loaded = load_weights(path)
        except WeightsFileError:
            outcomes["error"] += 1
            continue
        outcomes["loaded"] += 1
        metadata, tensors = _parse_safetensors(bytes(mutated))
        assert upsample.load_spec(metadata["upsample.spec"]) == loaded_spec
        for name, array in zip(("kernel", "bias", "skip"), loaded.arrays(), strict=True):
            if array is None:
                assert name not in tensors
            else:
                np.testing.assert_array_equal(array, tensors[name])
    assert outcomes["error"] > 100 and outcomes["loaded"] > 10, outcomes


# --- drawn spec arguments ---------------------------------------------------------------------------

ARGUMENTS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "output_padding",
    "residual",
    "use_bias",
)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["same", "valid", "nearest", "projection", "SAME"]),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(ARGUMENTS), values, max_size=len(ARGUMENTS)), st.integers(1, 5))
def test_drawn_arguments_give_a_spec_or_an_error_naming_one(arguments: dict[str, Any], size: int) -> None:
    arguments.setdefault("in_channels", 2)
    try:
        spec = UpsampleSpec(**arguments)
    except (TypeError, ValueError) as error:
        message = str(error)
        assert len(message) <= MESSAGE_LIMIT
        assert any(name in message for name in (*ARGUMENTS, "crops")), message
        return
    assert UpsampleSpec.from_json(spec.to_json()) == spec
    try:
        spec.diagnose(size)
    except ValueError as error:  # an empty output or one over the limits, said as such
        assert "output size would be" in str(error) or "would be" in str(error)


def test_a_huge_stride_costs_the_memory_of_the_output_only() -> None:
    """Coverage along an axis is ``O(output)``: a stride of 10**8 on a 1-pixel input (a 3-pixel output) once
    allocated a list as long as the stride (found by the drawn-arguments test above taking seconds)."""
    import tracemalloc

    tracemalloc.start()
    try:
        report = UpsampleSpec(2, kernel_size=3, stride=10**8).diagnose(1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.output_size == (3, 3) and peak < 2**20, peak
