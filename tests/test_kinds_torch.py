"""The PyTorch sub-pixel and resize layers (issue 15) against the NumPy reference (forward, input and
weight gradients) and against torch's own ``Conv2d`` + ``PixelShuffle`` / ``nn.Upsample`` patterns;
ICNR's nearest-upsampling property, weight conversion and ``from_native`` refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cases import require_backend
from hypothesis import given, settings
from kind_cases import CASES, SWEEP, Spec, case_id, expected, inputs, random_cases, weights

import upsample
from upsample.conv_specs import ResizeSpec, SubpixelSpec

try:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from upsample.backends import torch as ut
except ImportError:  # the fixture below skips (locally) or fails (CI) with the install hint
    pass

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True, scope="module")
def _torch_installed() -> None:
    require_backend("torch")


def nchw(x: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=requires_grad)


def nhwc(y: torch.Tensor) -> np.ndarray:
    return y.detach().double().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(("spec", "size"), CASES, ids=case_id)
def test_forward_and_gradients_match_reference(spec: Spec, size: tuple[int, int], fast_path: bool) -> None:
    check_against_reference(spec, size, fast_path, seed=0)


@settings(max_examples=30, deadline=None)
@given(random_cases())
def test_random_cases_match_reference(case: tuple[Spec, tuple[int, int], int]) -> None:
    spec, size, seed = case
    check_against_reference(spec, size, fast_path=True, seed=seed)


def check_against_reference(spec: Spec, size: tuple[int, int], fast_path: bool, seed: int) -> None:
    w = weights(spec, seed)
    x, grad_y = inputs(spec, size, seed=seed)
    want = expected(spec, w, x, grad_y)
    layer = spec.build("torch", weights=w, fast_path=fast_path)
    x_t = nchw(x, requires_grad=True)
    y = layer(x_t)
    y.backward(nchw(grad_y))
    np.testing.assert_allclose(nhwc(y), want["y"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(nhwc(x_t.grad), want["grad_x"], rtol=RTOL, atol=ATOL)
    conv = layer.conv  # None: a resize alone
    grads = upsample.Weights(
        None if conv is None else conv.weight.grad.permute(2, 3, 1, 0).numpy(),
        None if conv is None or conv.bias is None else conv.bias.grad.numpy(),
        None if layer.skip is None else layer.skip.weight.grad[:, :, 0, 0].T.numpy(),
    )
    for name in ("kernel", "bias", "skip"):
        got, ref = getattr(grads, name), want[f"grad_{name}"]
        assert (got is None) == (ref is None), name
        if ref is not None:
            np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=name)


def _native(spec: Spec) -> nn.Module:
    """The pattern a torch user writes, with torch's own initialisation (a resize alone: ``nn.Upsample``)."""
    if spec.kernel_size is None:
        mode, align = next(call for call, settings in TORCH_CALLS.items() if _settings(spec) == settings)
        return nn.Upsample(scale_factor=spec.scale, mode=mode, align_corners=align)
    conv_channels = spec.weight_shapes()["kernel"][3]  # type: ignore[index]
    conv = nn.Conv2d(spec.in_channels, conv_channels, spec.kernel_size, padding="same", bias=spec.use_bias)
    if isinstance(spec, SubpixelSpec):
        return nn.Sequential(conv, nn.PixelShuffle(spec.scale[0]))
    mode, align = next(call for call, settings in TORCH_CALLS.items() if _settings(spec) == settings)
    factor = {"scale_factor": spec.scale} if spec.size is None else {"size": spec.size}
    return nn.Sequential(nn.Upsample(**factor, mode=mode, align_corners=align), conv)


TORCH_CALLS = {
    ("nearest", None): ("nearest", "half_pixel", -0.75, False),
    ("bilinear", False): ("linear", "half_pixel", -0.75, False),
    ("bilinear", True): ("linear", "align_corners", -0.75, False),
    ("bicubic", False): ("cubic", "half_pixel", -0.75, False),
    ("bicubic", True): ("cubic", "align_corners", -0.75, False),
}
"""``nn.Upsample``'s ``(mode, align_corners)`` and the spec settings it computes by an integer factor (method,
coordinates, cubic_a, exclude_outside; torch's nearest is asymmetric-floor, which repeats like half-pixel)."""


def _settings(spec: ResizeSpec) -> tuple[object, ...]:
    return (spec.method, spec.coordinates, spec.cubic_a, spec.exclude_outside)


NATIVE = [
    s
    for s in SWEEP
    if s.residual is None
    and (
        s.scale[0] == s.scale[1]
        if isinstance(s, SubpixelSpec)
        else _settings(s) in TORCH_CALLS.values() and (s.scale is None or s.integer_scale is not None)
    )
]
"""The sweep's specs a torch user writes as ``nn.Upsample`` with ``scale_factor`` or ``size`` (non-integer factors:
``test_upsample_by_any_factor_or_size``)."""


@pytest.mark.parametrize("spec", NATIVE, ids=case_id)
def test_from_native_gives_the_native_modules_numbers(spec: Spec) -> None:
    torch.manual_seed(0)
    native = _native(spec).double()
    got_spec, got_weights = ut.from_native(native, **({} if spec.kernel_size else {"in_channels": spec.in_channels}))
    assert got_spec == spec
    x = torch.randn(2, spec.in_channels, 3, 4, dtype=torch.float64)
    layer = ut.build(got_spec, weights=got_weights, dtype=torch.float64)
    torch.testing.assert_close(layer(x), native(x), rtol=1e-12, atol=1e-12)
    assert ut.get_weights(layer).allclose(got_weights, rtol=0)


TORCH_MODES = [("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True), ("bicubic", False)]
TORCH_MODES += [("bicubic", True)]


@pytest.mark.parametrize(("mode", "align_corners"), TORCH_MODES)
def test_upsample_by_any_factor_or_size(mode: str, align_corners: bool | None) -> None:
    """``nn.Upsample`` to a size, or by a non-integer factor where from_native takes it, equals the layer built from
    the spec it reads, at lengths where the factor keeps the length and where it does not; the other factors are
    refused by name (what torch computes there is measured in ``resize_factor``'s docstring)."""
    torch.manual_seed(0)
    exact_by_factor = mode == "bicubic" or align_corners is True
    for factor in (1.5, 2.3, 1.1, 0.6):
        for n in (1, 3, 10):
            size = (max(1, int(n * factor)), n + 3)
            for resize in (
                nn.Upsample(scale_factor=factor, mode=mode, align_corners=align_corners),
                nn.Upsample(size=size, mode=mode, align_corners=align_corners),
            ):
                native = nn.Sequential(resize, nn.Conv2d(2, 3, 3, padding="same")).double()
                if resize.size is None and not exact_by_factor:
                    with pytest.raises(ValueError, match="give size="):
                        ut.from_native(native)
                    continue
                spec, w = ut.from_native(native)
                if int(n * factor) == 0:  # no output pixel: refused by both (test_resize_factors.py)
                    continue
                x = torch.randn(2, 2, n, n + 1, dtype=torch.float64)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", upsample.UpsampleWarning)  # a shrink, or a size kept
                    got = ut.build(spec, weights=w, dtype=torch.float64)(x)
                torch.testing.assert_close(got, native(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spec", [s for s in SWEEP if isinstance(s, SubpixelSpec)], ids=case_id)
def test_icnr_is_nearest_upsampling_of_a_conv(spec: SubpixelSpec) -> None:
    w = upsample.init_weights(spec, seed=1, scheme="icnr")
    bare = SubpixelSpec(spec.in_channels, spec.out_channels, spec.scale, spec.kernel_size, use_bias=spec.use_bias)
    layer = ut.build(bare, weights=upsample.Weights(w.kernel, w.bias))
    x = torch.randn(2, spec.in_channels, 3, 4)
    rh, rw = spec.scale
    small = torch.from_numpy(np.ascontiguousarray(w.kernel[..., :: rh * rw].transpose(3, 2, 0, 1)))
    conv = F.conv2d(F.pad(x, _torch_pads(spec)), small)
    torch.testing.assert_close(layer(x), conv.repeat_interleave(rh, 2).repeat_interleave(rw, 3), rtol=1e-6, atol=1e-6)


def _torch_pads(spec: Spec) -> tuple[int, int, int, int]:
    (top, bottom), (left, right) = spec.padding
    return (left, right, top, bottom)


def test_weights_round_trip_and_dispatch() -> None:
    for spec in SWEEP:
        w = weights(spec)
        layer = ut.build(spec, weights=w)
        assert isinstance(layer, ut.Subpixel if isinstance(spec, SubpixelSpec) else ut.ResizeConv)
        assert ut.get_weights(layer).allclose(w, rtol=0)
        ut.set_weights(layer, upsample.init_weights(spec, seed=9))
        assert ut.get_weights(layer).allclose(upsample.init_weights(spec, seed=9), rtol=0)
    assert isinstance(upsample.UpsampleSpec(2, kernel_size=2, stride=2).build("torch"), ut.Upsample)


@pytest.mark.parametrize(
    ("module", "pattern"),
    [
        (lambda: nn.Sequential(nn.Conv2d(2, 8, 3, stride=2, padding=1), nn.PixelShuffle(2)), "conv.stride"),
        (lambda: nn.Sequential(nn.Conv2d(2, 8, 3), nn.PixelShuffle(2)), "conv.padding must be 'same'"),
        (lambda: nn.Sequential(nn.Conv2d(2, 8, 3, padding=1, dilation=2), nn.PixelShuffle(2)), r"or \(2, 2\) for"),
        (
            lambda: nn.Sequential(nn.Upsample(scale_factor=2, mode="area"), nn.Conv2d(2, 2, 1)),
            r"mode must be one of \['bicubic', 'linear', 'nearest', 'nearest-exact'\].*mode='area'",
        ),
        (
            lambda: nn.Sequential(
                nn.Upsample(scale_factor=1.5, mode="bicubic", recompute_scale_factor=True), nn.Conv2d(2, 2, 1)
            ),
            r"non-integer scale_factor in mode 'bicubic' \(recompute_scale_factor=True\)",
        ),
        (
            lambda: nn.Sequential(nn.Upsample(scale_factor=1.5), nn.Conv2d(2, 2, 1)),
            "give size= .exact in every mode. or an integer factor",
        ),
        (lambda: nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 1)), r"\(ReLU, Conv2d\)"),
    ],
)
def test_from_native_refuses_what_has_no_spec(module, pattern) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((TypeError, ValueError), match=pattern):
        ut.from_native(module())


def test_wrong_input_is_named() -> None:
    layer = SubpixelSpec(3).build("torch")
    with pytest.raises(ValueError, match="expected NCHW with C=3"):
        layer(torch.zeros(1, 2, 2, 3 + 1))
    with pytest.raises(TypeError, match="spec must be an upsample SubpixelSpec, got ResizeSpec"):
        ut.Subpixel(ResizeSpec(3))  # type: ignore[arg-type]
