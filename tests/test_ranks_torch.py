"""PyTorch layers and heads at 1 and 3 spatial axes.

Oracles: the NumPy reference (forward, input and weight gradients; heads: ``upsample.head_reference`` in
training mode with running statistics) and torch's own ``ConvTranspose1d/3d``, ``Conv1d/3d`` and
``F.interpolate``, fed converted weights, with the N-d pixel shuffle written here per output pixel (MONAI's
formula). Cases are sampled, not swept: every kind and residual mode at each rank, one-pixel (the matmul path)
and larger inputs, fast and native paths.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest
import rank_cases
from cases import require_backend
from head_cases import RTOL as HEAD_RTOL
from head_cases import assert_gradients_close, assert_weights_close, batches, head_weights
from kind_cases import Spec, inputs, weights

import upsample
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec, head_reference
from upsample.head import Norm

try:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from upsample.backends import torch as ut
    from upsample.backends.torch import head as torch_head
    from upsample.runners import torch as runner
except ImportError:  # the fixture below skips (locally) or fails (CI) with the install hint
    pass

RTOL, ATOL = 1e-4, 1e-5
pytestmark = pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")


@pytest.fixture(autouse=True, scope="module")
def _torch_installed() -> None:
    require_backend("torch")


SPECS, SIZES = rank_cases.SPECS, rank_cases.SIZES
CASES = [  # each spec and size, alternating the fast and the native path
    (spec, size, (i + j) % 2 == 0) for i, spec in enumerate(SPECS) for j, size in enumerate(SIZES[spec.spatial_dims])
]


def spec_ids(specs: list[Any]) -> list[str]:
    return [f"{spec.KIND}-{spec.spatial_dims}d-{i}" for i, spec in enumerate(specs)]


def case_id(case: Any) -> str:
    spec, size, fast_path = case
    return f"{spec.KIND}-{SPECS.index(spec)}-{'x'.join(map(str, size))}-{'fast' if fast_path else 'native'}"


def channels_first(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def channels_last(y: torch.Tensor) -> np.ndarray:
    return np.moveaxis(y.detach().double().numpy(), 1, -1)


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_forward_and_gradients_match_reference(case: tuple[Spec, tuple[int, ...], bool]) -> None:
    """Through the runner ``upsample check`` uses: autograd's input and weight gradients, read back canonical."""
    spec, size, fast_path = case
    w = weights(spec, seed=1)
    x, grad_y = inputs(spec, size, seed=2)
    got = runner.run(spec, w, x, grad_y, fast_path=fast_path, repeats=0)
    grad_x, grad_w = upsample.reference.vjp(spec, w, x.astype(np.float64), grad_y.astype(np.float64))
    y = upsample.reference.forward(spec, w, x.astype(np.float64))
    np.testing.assert_allclose(got.y, y, rtol=RTOL, atol=ATOL, err_msg="output")
    np.testing.assert_allclose(got.grad_x, grad_x, rtol=RTOL, atol=ATOL, err_msg="input gradient")
    for name, array, want in zip(("kernel", "bias", "skip"), got.grad_weights.arrays(), grad_w.arrays(), strict=True):
        assert (array is None) == (want is None), name
        if want is not None:
            np.testing.assert_allclose(array, want, rtol=RTOL, atol=ATOL, err_msg=f"{name} gradient")


# --- torch's own layers fed converted weights ------------------------------------------------------


def shuffled_by_index(z: np.ndarray, scale: tuple[int, ...], channels: int) -> np.ndarray:
    """The CRD pixel shuffle per output pixel (MONAI's formula), channels-last: output ``(o_1..o_d, c)`` reads
    conv channel ``c * prod(r) + flat(o_1 % r_1, ..., o_d % r_d)`` at pixel ``(o_1 // r_1, ..., o_d // r_d)``."""
    batch, *size, _ = z.shape
    out = np.empty((batch, *(n * r for n, r in zip(size, scale, strict=True)), channels), z.dtype)
    for pixel in itertools.product(*(range(n) for n in out.shape[1:-1])):
        flat = 0
        for o, r in zip(pixel, scale, strict=True):
            flat = flat * r + o % r
        source = tuple(o // r for o, r in zip(pixel, scale, strict=True))
        read = [c * int(np.prod(scale)) + flat for c in range(channels)]
        out[(slice(None), *pixel)] = z[(slice(None), *source)][:, read]
    return out


CONV_T = {1: F.conv_transpose1d, 3: F.conv_transpose3d} if "F" in globals() else {}
CONV = {1: F.conv1d, 3: F.conv3d} if "F" in globals() else {}
LINEAR = {1: "linear", 3: "trilinear"}


def torch_own(spec: Spec, w: upsample.Weights, x: np.ndarray) -> np.ndarray:
    """The spec's convolution step (no residual) by torch's own functional ops, channels-last in and out."""
    rank, xs = spec.spatial_dims, channels_first(x)
    bias = None if w.bias is None else torch.from_numpy(w.bias)
    axes = tuple(range(rank))
    if isinstance(spec, UpsampleSpec):  # torch weight (C_in, C_out, *k); full output, then the crops by hand
        weight = torch.from_numpy(np.ascontiguousarray(w.kernel.transpose(rank, rank + 1, *axes)))
        full = channels_last(CONV_T[rank](xs, weight, bias, stride=spec.stride))
        out = full
        for a, (begin, end) in enumerate(spec.crops):
            n = out.shape[1 + a]
            pad = [(0, 0)] * out.ndim
            pad[1 + a] = (max(0, -begin), max(0, -end))
            out = np.pad(np.take(out, range(max(0, begin), n - max(0, end)), axis=1 + a), pad)
            if bias is not None and (begin < 0 or end < 0):  # added rows get the bias alone
                index = [slice(None)] * out.ndim
                for lo, hi in ((0, max(0, -begin)), (out.shape[1 + a] - max(0, -end), out.shape[1 + a])):
                    index[1 + a] = slice(lo, hi)
                    out[tuple(index)] = w.bias
        return out
    weight = torch.from_numpy(np.ascontiguousarray(w.kernel.transpose(rank + 1, rank, *axes)))
    pads = [side for k in reversed(spec.kernel_size) for side in ((k - 1) // 2, k - 1 - (k - 1) // 2)]
    if isinstance(spec, SubpixelSpec):
        z = channels_last(CONV[rank](F.pad(xs, pads), weight, bias))
        return shuffled_by_index(z, spec.scale, spec.out_channels)
    mode = "nearest" if spec.method == "nearest" else LINEAR[rank]
    corners = None if mode == "nearest" else spec.coordinates == "align_corners"
    resized = F.interpolate(xs, scale_factor=spec.scale, mode=mode, align_corners=corners)
    return channels_last(CONV[rank](F.pad(resized, pads), weight, bias))


def _torch_has(spec: Spec) -> bool:
    """Whether ``F.interpolate`` at this rank computes the spec's resize: nearest repeating pixels, linear with
    half-pixel centres or ``align_corners`` (cubic is 2-D only)."""
    if not isinstance(spec, ResizeSpec):
        return True
    if spec.method == "nearest":
        return spec.coordinates == "half_pixel" and spec.nearest_mode.startswith("round")
    return spec.method == "linear" and spec.coordinates in ("half_pixel", "align_corners")


NATIVE_SPECS = [spec for spec in SPECS if spec.residual is None and _torch_has(spec)] + [
    UpsampleSpec(3, 2, kernel_size=(5,), stride=3, padding=((1, 3),)),
    UpsampleSpec(3, 2, kernel_size=(4, 3, 2), stride=(2, 1, 2), padding=((1, 1), (-1, 2), (0, 0)), spatial_dims=3),
    SubpixelSpec(3, 2, scale=(2, 2, 2), kernel_size=(3, 1, 2)),
    ResizeSpec(2, 3, scale=(3,), method="nearest", kernel_size=2),
]


@pytest.mark.parametrize("spec", NATIVE_SPECS, ids=spec_ids(NATIVE_SPECS))
def test_matches_torch_own_ops(spec: Spec) -> None:
    w = weights(spec, seed=3)
    for size in SIZES[spec.spatial_dims]:
        x, _ = inputs(spec, size, seed=4)
        want = torch_own(spec, w, x)
        got = channels_last(ut.build(spec, weights=w)(channels_first(x)))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=str(size))


def test_native_modules_are_torch_own() -> None:
    """A crop torch expresses runs torch's own ConvTranspose1d/3d; the layer is that module with converted weights."""
    for spec, native in (
        (UpsampleSpec(4, 3, kernel_size=(16,), stride=8, padding=4), nn.ConvTranspose1d(4, 3, 16, stride=8, padding=4)),
        (UpsampleSpec(3, 2, kernel_size=2, stride=2, spatial_dims=3), nn.ConvTranspose3d(3, 2, 2, stride=2)),
    ):
        w = weights(spec, seed=5)
        layer = ut.build(spec, weights=w, fast_path=False)
        assert type(layer.conv) is type(native)
        rank = spec.spatial_dims
        with torch.no_grad():
            native.weight.copy_(torch.from_numpy(w.kernel.transpose(rank, rank + 1, *range(rank))))
            native.bias.copy_(torch.from_numpy(w.bias))
        x = torch.randn(2, spec.in_channels, *(3,) * rank)
        torch.testing.assert_close(layer(x), native(x), rtol=RTOL, atol=ATOL)


# --- weights, from_native, unbatched input, warnings ----------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=spec_ids(SPECS))
def test_get_and_set_weights_round_trip(spec: Spec) -> None:
    first, second = weights(spec, seed=5), weights(spec, seed=6)
    x, _ = inputs(spec, SIZES[spec.spatial_dims][1], seed=7)
    layer = ut.build(spec, weights=first)
    assert ut.get_weights(layer).allclose(first, rtol=0)
    ut.set_weights(layer, second)
    assert ut.get_weights(layer).allclose(second, rtol=0)
    y = upsample.reference.forward(spec, second, x.astype(np.float64))
    np.testing.assert_allclose(channels_last(layer(channels_first(x))), y, rtol=RTOL, atol=ATOL)


def test_from_native_round_trip() -> None:
    """ConvTranspose1d/3d and Sequential(Upsample, Conv1d/3d) come back as specs of their rank computing what the
    modules compute; the HiFi-GAN stage (ConvTranspose1d k16 s8 p4) among them."""
    torch.manual_seed(0)
    modules = [
        (nn.ConvTranspose1d(8, 4, 16, stride=8, padding=4), (2, 8, 5)),
        (nn.ConvTranspose3d(3, 2, (4, 3, 2), stride=(2, 1, 2), padding=(1, 1, 0), output_padding=(1, 0, 1)),
         (2, 3, 2, 3, 2)),
        (nn.Sequential(nn.Upsample(scale_factor=3, mode="linear"), nn.Conv1d(3, 2, 3, padding=1)), (2, 3, 4)),
        (nn.Sequential(nn.Upsample(scale_factor=(2, 1, 2)), nn.Conv3d(3, 2, (3, 1, 2), padding="same")),
         (2, 3, 2, 3, 2)),
        (nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear"), nn.Conv3d(3, 2, 1)), (1, 3, 2, 2, 2)),
    ]  # fmt: skip
    for module, shape in modules:
        spec, w = ut.from_native(module)
        assert spec.spatial_dims == len(shape) - 2, module
        x = torch.randn(shape)
        layer = ut.build(spec, weights=w)
        torch.testing.assert_close(layer(x), module(x), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(
            channels_last(module(x)), upsample.reference.forward(spec, w, channels_last(x)), rtol=RTOL, atol=ATOL
        )
        assert ut.get_weights(layer).allclose(w, rtol=0)
    assert ut.from_native(modules[0][0])[0] == UpsampleSpec(8, 4, kernel_size=(16,), stride=8, padding=4)


def test_from_native_refuses_pixel_shuffle_after_a_3d_conv() -> None:
    with pytest.raises(TypeError, match="PixelShuffle is 2-D; the convolution before it is Conv3d"):
        ut.from_native(nn.Sequential(nn.Conv3d(8, 8, 3, padding=1), nn.PixelShuffle(2)))


def test_unbatched_input_and_wrong_rank() -> None:
    for spec in (SPECS[2], SPECS[8], SPECS[10]):
        w = weights(spec, seed=10)
        x, _ = inputs(spec, SIZES[spec.spatial_dims][1], batch=1, seed=11)
        layer = ut.build(spec, weights=w)
        xs = channels_first(x)
        torch.testing.assert_close(layer(xs[0]), layer(xs)[0], rtol=1e-6, atol=1e-6)
        with pytest.raises(ValueError, match=r"x must be a rank-\d N\w+ .*got shape \(1, 2, 3, 4, 5, 3\)"):
            layer(torch.zeros((1, 2, 3, 4, 5, 3)))


def test_dead_pixel_warning_at_ranks_1_and_3() -> None:
    for spec, shape in (
        (UpsampleSpec(2, 2, kernel_size=(1, 2, 2), stride=2, spatial_dims=3), (1, 2, 2, 2, 2)),
        (UpsampleSpec(2, 2, kernel_size=(3,), stride=8), (1, 2, 2)),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ut.build(spec)(torch.zeros(shape))
        assert any("dead" in str(w.message) for w in caught), [str(w.message) for w in caught]


# --- heads ----------------------------------------------------------------------------------------

HEADS = {
    "1d-transposed-batch": upsample.plan(6, (16,), 3, "transposed", norm="batch", final_activation="tanh"),
    "1d-subpixel-layer": upsample.plan(6, 8, 3, "subpixel", norm="layer", input_size=(2,), spatial_dims=1),
    "1d-resize-instance": upsample.plan(4, 8, 2, "resize", norm="instance", input_size=(2,), spatial_dims=1),
    "3d-transposed-group": upsample.plan(4, (4, 4, 4), 2, "transposed", norm=Norm("group", groups=2)),
    "3d-resize-batch": upsample.plan(4, 4, 2, "resize", norm="batch", input_size=(1, 1, 1), spatial_dims=3),
    "3d-subpixel-batch": upsample.plan(4, 4, 2, "subpixel", norm="batch", input_size=(1, 2, 1), spatial_dims=3),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_head_training_step_matches_reference(name: str) -> None:
    """Outputs, input and weight gradients in training mode, running statistics after the pass, and the
    inference-mode output with them, against ``upsample.head_reference``."""
    spec = HEADS[name]
    w = head_weights(spec, seed=12)
    (x, grad_y), *_ = batches(spec, count=1, seed=13)
    head = torch_head.build(spec, weights=w).train()
    xs = channels_first(x).requires_grad_(True)
    y = head(xs)
    y.backward(channels_first(grad_y))
    assert xs.grad is not None
    want_y, want_after = head_reference.forward(spec, w, x.astype(np.float64), training=True)
    want_grad_x, want_grads = head_reference.vjp(spec, w, x.astype(np.float64), grad_y, training=True)
    np.testing.assert_allclose(channels_last(y), want_y, rtol=HEAD_RTOL, atol=ATOL, err_msg="output")
    np.testing.assert_allclose(channels_last(xs.grad), want_grad_x, rtol=HEAD_RTOL, atol=ATOL, err_msg="input grad")
    assert_gradients_close(spec, runner._gradients(head), want_grads, x.shape[0])
    after = torch_head.get_weights(head)
    assert_weights_close(after, want_after, "after the training pass")
    want_eval, _ = head_reference.forward(spec, want_after, x.astype(np.float64))
    with torch.no_grad():
        got_eval = channels_last(head.eval()(channels_first(x)))
    np.testing.assert_allclose(got_eval, want_eval, rtol=HEAD_RTOL, atol=ATOL, err_msg="inference")


def test_head_from_native_rank_1_and_3() -> None:
    """A 1-D ``nn.Sequential`` with BatchNorm1d and a 3-D one with GroupNorm are read as heads of that rank whose
    reference output (training and inference) is the model's own."""
    torch.manual_seed(1)
    models = [
        (nn.Sequential(nn.ConvTranspose1d(3, 4, 4, 2, 1), nn.BatchNorm1d(4), nn.ReLU(), nn.ConvTranspose1d(4, 2, 2)),
         (2, 3, 4), "batch"),
        (nn.Sequential(nn.ConvTranspose3d(2, 4, 2, 2), nn.GroupNorm(2, 4), nn.ReLU(),
                       nn.Upsample(scale_factor=2), nn.Conv3d(4, 2, 3, padding=1), nn.Tanh()),
         (2, 2, 1, 2, 3), "group"),
    ]  # fmt: skip
    for model, shape, norm in models:
        spec, w = ut.from_native(model)
        assert spec.spatial_dims == len(shape) - 2 and spec.norm.kind == norm
        x = torch.randn(shape)
        for training in (False, True):  # inference first: the training pass updates the running statistics
            model.train(training)
            y, _ = head_reference.forward(spec, w, channels_last(x), training=training)
            np.testing.assert_allclose(channels_last(model(x)), y, rtol=HEAD_RTOL, atol=ATOL, err_msg=str(training))
