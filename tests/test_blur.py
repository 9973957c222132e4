"""The blur after an upsampler (:class:`upsample.Blur`, issue 27): its presets against the modules that define
them (fastai's and MONAI's pad + average pool, an FIR as a padded convolution), the reference against a NumPy
oracle, the spec's rules and JSON, coverage (does the checkerboard remain?) and ONNX. The six builds run the
blurred layers of ``blur_cases`` in the equivalence suite, and a head with a blurred stage in the head tests."""

from __future__ import annotations

import dataclasses

import blur_cases
import numpy as np
import pytest

import upsample
from upsample import Blur, ResizeSpec, SubpixelSpec, UpsampleSpec, reference

torch = pytest.importorskip("torch")
nn = torch.nn


def blur_alone(blur: Blur | str, channels: int, rank: int) -> ResizeSpec:
    """A spec that is the blur and nothing else: a resize alone by 1, then the blur."""
    return ResizeSpec(channels, scale=1, kernel_size=None, blur=blur, spatial_dims=rank)


def oracle(blur: Blur, x: np.ndarray) -> np.ndarray:
    """``x`` (``(N, *spatial, C)``) padded with ``np.pad`` and correlated with each axis's taps, independently of
    the library's code."""
    mode = "constant" if blur.mode == "zeros" else "edge"
    for axis, (taps, (before, after)) in enumerate(zip(blur.taps, blur.padding, strict=True), start=1):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (before, after)
        padded = np.pad(x, widths, mode=mode)
        moved = np.moveaxis(padded, axis, 0)
        length = x.shape[axis]
        x = np.moveaxis(sum(t * moved[i : i + length] for i, t in enumerate(taps)), 0, axis)
    return blur.gain * x


def torch_forward(module: nn.Module, x: np.ndarray) -> np.ndarray:
    y = module(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    return np.moveaxis(y.detach().numpy(), 1, -1)


def test_fastai_preset_is_replication_pad_then_average_pool() -> None:
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype(np.float32)
    fastai = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1))
    ours = reference.forward(blur_alone("fastai", 3, 2), upsample.Weights(None), x)
    np.testing.assert_allclose(ours, torch_forward(fastai, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("scale", [2, 3])
def test_monai_preset_is_zero_pad_then_average_pool_at_the_scale(rank: int, scale: int) -> None:
    pad = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d}[rank]((scale - 1, 0) * rank, 0.0)
    pool = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[rank](kernel_size=scale, stride=1)
    x = np.random.default_rng(rank).normal(size=(2, *(4,) * rank, 3)).astype(np.float32)
    ours = reference.forward(blur_alone(Blur.monai(scale), 3, rank), upsample.Weights(None), x)
    np.testing.assert_allclose(ours, torch_forward(nn.Sequential(pad, pool), x), rtol=1e-6, atol=1e-6)


def test_fir_preset_is_the_normalised_kernel_as_a_padded_depthwise_convolution() -> None:
    taps = np.array([1.0, 3.0, 3.0, 1.0])
    kernel = np.outer(taps, taps) / taps.sum() ** 2
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 3)).astype(np.float32)
    weight = torch.tensor(np.broadcast_to(kernel, (3, 1, 4, 4)).copy(), dtype=torch.float32)
    padded = torch.nn.functional.pad(torch.from_numpy(np.moveaxis(x, -1, 1).copy()), (2, 1, 2, 1))
    theirs = np.moveaxis(torch.nn.functional.conv2d(padded, weight, groups=3).numpy(), 1, -1)
    ours = reference.forward(blur_alone("fir", 3, 2), upsample.Weights(None), x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert Blur.fir().padding == ((2, 1),) and Blur.fir((1, 2, 1), factor=1).padding == ((1, 1),)


@pytest.mark.parametrize("spec", blur_cases.SPECS, ids=blur_cases.IDS)
def test_reference_is_the_unblurred_layer_then_the_oracle(spec) -> None:  # type: ignore[no-untyped-def]
    weights = upsample.init_weights(spec, seed=3)
    for size in blur_cases.SIZES[spec.spatial_dims]:
        x = np.random.default_rng(4).normal(size=(2, *size, spec.in_channels))
        bare = dataclasses.replace(spec, blur=None, residual=None)
        skip = 0.0
        if spec.residual is not None:
            residual_only = dataclasses.replace(spec, blur=None)
            skip = reference.forward(residual_only, weights, x) - reference.forward(
                bare, upsample.Weights(weights.kernel, weights.bias), x
            )
        want = oracle(spec.blur, reference.forward(bare, upsample.Weights(weights.kernel, weights.bias), x)) + skip
        np.testing.assert_allclose(reference.forward(spec, weights, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", blur_cases.SPECS[::3], ids=blur_cases.IDS[::3])
def test_reference_vjp_is_the_adjoint_of_its_forward(spec) -> None:  # type: ignore[no-untyped-def]
    weights = upsample.init_weights(spec, seed=5)
    rng = np.random.default_rng(6)
    size = blur_cases.SIZES[spec.spatial_dims][1]
    x, dx = rng.normal(size=(2, 2, *size, spec.in_channels))
    grad_y = rng.normal(size=(2, *spec.output_size(size), spec.out_channels))
    grad_x, _ = reference.vjp(spec, weights, x, grad_y)
    eps = 1e-6
    numeric = (reference.forward(spec, weights, x + eps * dx) - reference.forward(spec, weights, x - eps * dx)) / (
        2 * eps
    )
    np.testing.assert_allclose(np.sum(grad_x * dx), np.sum(numeric * grad_y), rtol=1e-7)


@pytest.mark.parametrize(
    ("arguments", "pattern"),
    [
        (
            {"taps": (0.5, 0.5), "padding": (1, 1)},
            r"blur padding must add len\(taps\) - 1 = 1 rows per axis .* got \(1, 1\)",
        ),
        ({"taps": (), "padding": (0, 0)}, r"blur taps must be 1 to 64 numbers, got \(\)"),
        ({"taps": (1.0, float("nan")), "padding": (1, 0)}, r"blur taps must be finite numbers"),
        ({"taps": (0, 0), "padding": (1, 0)}, r"blur taps must have a tap that is not 0"),
        (
            {"taps": (1, 1), "padding": (1, 0), "mode": "reflect"},
            r"blur mode must be one of \['zeros', 'replicate'\], got 'reflect'",
        ),
        ({"taps": (1, 1), "padding": (1, 0), "gain": 0}, r"blur gain must be a finite number other than 0, got 0"),
        ({"taps": (1, 1), "padding": (-1, 2)}, r"blur padding\[0\] must be >= 0, got -1"),
    ],
)
def test_a_bad_blur_is_named(arguments: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        Blur(**arguments)


def test_a_spec_takes_a_blur_a_preset_or_its_json() -> None:
    spec = SubpixelSpec(4, scale=(2, 3), blur="monai")
    assert spec.blur == Blur([(0.5, 0.5), (1 / 3,) * 3], [(1, 0), (2, 0)])
    assert upsample.load_spec(spec.to_json()) == spec and "blur" not in SubpixelSpec(4).to_dict()
    assert UpsampleSpec.from_json(
        UpsampleSpec(2, kernel_size=4, stride=2, blur="fir").to_json()
    ).blur == Blur.fir().for_rank(2)
    with pytest.raises(
        ValueError, match=r"blur must be None, a Blur or one of \['fastai', 'monai', 'fir'\], got 'gauss'"
    ):
        SubpixelSpec(4, blur="gauss")
    with pytest.raises(ValueError, match=r"blur='monai' averages over the spec's integer scale; this spec has none"):
        ResizeSpec(4, scale=1.5, blur="monai")
    with pytest.raises(ValueError, match=r"blur has 2 axes of taps; the spec has 3 spatial axes"):
        SubpixelSpec(4, spatial_dims=3, blur=Blur([(1, 1), (1, 1)], (1, 0)))
    with pytest.raises(ValueError, match=r"a spec's blur must be a dict with keys"):
        upsample.load_spec({**SubpixelSpec(4).to_dict(), "blur": {"taps": [[1]]}})
    assert SubpixelSpec(4, blur="fastai").flops(3) == SubpixelSpec(4).flops(3) + 2 * 36 * 4 * 4


def test_coverage_says_whether_the_blur_evens_out_the_checkerboard() -> None:
    """DCGAN-style k3 s2 overlaps 1, 2, 1, 2 ...: a 2-tap average evens it, and so does the FIR; k5 s3 (2, 2, 1) blurred
    by (1, 2, 1) stays uneven (7, 7, 6), and the verdict says the blur does not even it out."""
    plain = UpsampleSpec(3, kernel_size=3, stride=2, padding=1, output_padding=1)
    assert plain.diagnose(4).uneven_axes == ("height", "width")
    for blur in ("monai", "fastai", "fir"):
        report = dataclasses.replace(plain, blur=blur).diagnose(4)
        assert report.ok and report.verdict.endswith("even overlap after the blur"), (blur, report.verdict)
    remains = UpsampleSpec(3, kernel_size=(5,), stride=3, padding=1, blur=Blur.fir((1, 2, 1), factor=1)).diagnose(4)
    assert remains.uneven_axes == ("length",) and "that the blur does not even out" in remains.verdict


@pytest.mark.parametrize("spec", blur_cases.SPECS, ids=blur_cases.IDS)
def test_coverage_counts_the_paths_from_the_input(spec) -> None:  # type: ignore[no-untyped-def]
    """The coverage map equals the reference run on ones with every kernel tap and blur tap 1 (a count of the paths
    from the input to each pixel) for a one-channel transposed layer; for every kind, a pixel is live exactly where
    some input reaches it."""
    size = blur_cases.SIZES[spec.spatial_dims][1]
    counts = spec.coverage(size)
    assert counts.shape == spec.output_size(size) and counts.min() > 0
    if isinstance(spec, UpsampleSpec):
        ones = Blur([[1.0] * len(t) for t in spec.blur.taps], spec.blur.padding, spec.blur.mode)
        single = UpsampleSpec(1, 1, spec.kernel_size, spec.stride, crops=spec.crops, use_bias=False, blur=ones)
        kernel = np.ones(single.weight_shapes()["kernel"])
        y = reference.forward(single, upsample.Weights(kernel), np.ones((1, *size, 1)))
        np.testing.assert_array_equal(y[0, ..., 0], counts)


@pytest.mark.parametrize("spec", blur_cases.SPECS, ids=blur_cases.IDS)
def test_onnx_export_runs_the_blur_in_onnxruntime(spec) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    from upsample.onnx import to_onnx

    weights = upsample.init_weights(spec, seed=7)
    size = blur_cases.SIZES[spec.spatial_dims][1]
    x = np.random.default_rng(8).normal(size=(2, spec.in_channels, *size)).astype(np.float32)
    session = ort.InferenceSession(to_onnx(spec, weights).SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    want = reference.forward(spec, weights, np.moveaxis(x, 1, -1))
    np.testing.assert_allclose(np.moveaxis(y, 1, -1), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "spec", [s for s in blur_cases.SPECS if s.spatial_dims == 2 or isinstance(s, UpsampleSpec)], ids=str
)
def test_onnx_reads_the_blur_back(spec) -> None:  # type: ignore[no-untyped-def]
    """``describe`` (``upsample inspect``) and ``from_onnx`` read the blur ``to_onnx`` wrote, so a layer with a blur is
    never reported without it (the taps as float32 hold them, a gain folded into the first axis's)."""
    pytest.importorskip("onnx")
    from upsample.onnx import describe, from_onnx, to_onnx

    model = to_onnx(spec, upsample.init_weights(spec), input_size=blur_cases.SIZES[spec.spatial_dims][1])
    (layer,) = describe(model)
    if layer.spec is None:  # a bare resize is not read back; its blur is then no spec's either
        assert spec.kernel_size is None and layer.problem
        return
    read = [layer.spec.blur] + ([from_onnx(model)[0].blur] if isinstance(spec, UpsampleSpec) else [])
    for blur in read:
        assert blur.padding == spec.blur.padding and blur.mode == spec.blur.mode
        np.testing.assert_allclose(np.concatenate(blur.taps), np.concatenate(spec.blur.weights), rtol=1e-7)
        assert dataclasses.replace(layer.spec, blur=None) == dataclasses.replace(spec, blur=None, residual=None)
