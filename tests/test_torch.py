"""The PyTorch backend against the NumPy reference (forward and gradients) and against torch's own
``nn.ConvTranspose2d``; weight conversion, ``from_native``, state dicts, compile/export, dtypes,
input checks, the dead-pixel warning and a small training run.
"""

from __future__ import annotations

import io
import itertools
import warnings

import numpy as np
import pytest
from cases import assert_close, cases, random_input, random_weights, require_backend, sweep, sweep_ids
from hypothesis import given, settings
from hypothesis import strategies as st

import upsample
from upsample import reference

try:
    import torch
    from torch import nn

    from upsample.backends import torch as ut
except ImportError:  # the fixture below skips (locally) or fails (CI) with the install hint
    pass


@pytest.fixture(autouse=True, scope="module")
def _torch_installed() -> None:
    require_backend("torch")


def to_nchw(x: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A contiguous NCHW tensor (``torch.tensor`` would keep the transposed, channels-last strides)."""
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=requires_grad)


def to_nhwc(y: torch.Tensor) -> np.ndarray:
    return y.detach().cpu().double().permute(0, 2, 3, 1).numpy()


def canonical_grads(layer: ut.Upsample) -> upsample.Weights:
    """The parameters' ``.grad`` in the canonical layout (kernel (kh, kw, C_in, C_out), skip (C_in, C_out))."""
    conv = layer.conv
    return upsample.Weights(
        conv.weight.grad.permute(2, 3, 0, 1).numpy(),
        None if conv.bias is None else conv.bias.grad.numpy(),
        None if layer.skip is None else layer.skip.weight.grad[:, :, 0, 0].T.numpy(),
    )


def quiet(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` without the dead-pixel warning (many sweep cases have dead pixels on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)
        return layer(x)


def check_against_reference(
    spec: upsample.UpsampleSpec, size: tuple[int, int], batch: int, seed: int, fast_path: bool
) -> None:
    """Forward and every gradient of a float32 layer against the float64 reference and its VJP."""
    weights = random_weights(spec, seed)
    x = random_input(spec, batch, size, seed)
    layer = ut.Upsample(spec, weights=weights, fast_path=fast_path)
    x_torch = to_nchw(x, requires_grad=True)
    y = quiet(layer, x_torch)
    assert y.dtype == torch.float32
    assert_close(to_nhwc(y), reference.forward(spec, weights, x), "forward", spec)

    grad_y = np.random.default_rng(seed + 2).normal(size=(batch, *spec.output_size(size), spec.out_channels))
    (y * to_nchw(grad_y.astype(np.float32))).sum().backward()
    grad_x, grad_weights = reference.vjp(spec, weights, x, grad_y)
    assert_close(to_nhwc(x_torch.grad), grad_x, "grad x", spec)
    grads = canonical_grads(layer)
    for name, actual, expected in zip(("kernel", "bias", "skip"), grads.arrays(), grad_weights.arrays(), strict=True):
        assert (actual is None) == (expected is None), f"grad {name} presence; spec {spec.to_json()}"
        if expected is not None:
            assert_close(actual, expected, f"grad {name}", spec)


# --- against the reference -------------------------------------------------------------------


SWEEP = [
    (spec, size, fast_path, f"{case_id}-{'fast' if fast_path else 'conv'}")
    for (spec, size), case_id in zip(sweep(), sweep_ids(), strict=True)
    for fast_path in ([True, False] if size == (1, 1) else [False])  # the fast path only changes 1x1 inputs
]


@pytest.mark.parametrize(("spec", "size", "fast_path"), [case[:3] for case in SWEEP], ids=[case[3] for case in SWEEP])
def test_sweep_matches_reference(spec: upsample.UpsampleSpec, size: tuple[int, int], fast_path: bool) -> None:
    check_against_reference(spec, size, batch=2, seed=7, fast_path=fast_path)


@settings(max_examples=100, deadline=None)
@given(case=cases(), fast_path=st.booleans())
def test_drawn_cases_match_reference(case: tuple, fast_path: bool) -> None:
    spec, size, batch, seed = case
    check_against_reference(spec, size, batch, seed, fast_path)


@pytest.mark.parametrize("batch", [1, 257])
def test_batch_sizes(batch: int) -> None:
    spec = upsample.UpsampleSpec.for_size(5, 6, out_channels=3, residual="projection")
    weights = random_weights(spec, 3)
    x = random_input(spec, batch, (1, 1), 3)
    for fast_path in (True, False):
        y = ut.Upsample(spec, weights=weights, fast_path=fast_path)(to_nchw(x))
        assert_close(to_nhwc(y), reference.forward(spec, weights, x), f"batch {batch}", spec)


# --- against torch's own layer ---------------------------------------------------------------

NATIVE_GRID = [(k, s, p, op) for k, s, p in itertools.product(range(1, 6), range(1, 5), range(3)) for op in range(s)]


NATIVE_IDS = [f"k{k}-s{s}-p{p}-op{op}" for k, s, p, op in NATIVE_GRID]


@pytest.mark.parametrize(("k", "s", "p", "op"), NATIVE_GRID, ids=NATIVE_IDS)
def test_matches_native_conv_transpose(k: int, s: int, p: int, op: int) -> None:
    """Same weights in ``nn.ConvTranspose2d``: identical outputs and gradients wherever torch accepts the layer."""
    torch.manual_seed(k * 100 + s * 10 + p)
    native = nn.ConvTranspose2d(3, 4, k, s, p, op)
    spec = upsample.UpsampleSpec(3, 4, kernel_size=k, stride=s, padding=p, output_padding=op)
    for size in [(1, 1), (3, 2)]:
        x = torch.randn(2, 3, *size)
        x_native = x.clone().requires_grad_(True)
        try:
            expected = native(x_native)
        except RuntimeError:  # torch refuses a negative output size
            expected = None
        if expected is None or expected.numel() == 0:  # the spec refuses empty outputs as well
            with pytest.raises(ValueError, match="output size would be"):
                spec.output_size(size)
            continue
        grad_y = torch.randn_like(expected)
        native.zero_grad()
        (expected * grad_y).sum().backward()
        for fast_path in [True, False] if size == (1, 1) else [False]:
            layer = ut.Upsample(spec, fast_path=fast_path)
            layer.conv.load_state_dict(native.state_dict())
            assert layer.conv.padding == native.padding and layer.conv.output_padding == native.output_padding
            x_ours = x.clone().requires_grad_(True)
            actual = quiet(layer, x_ours)
            torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
            (actual * grad_y).sum().backward()
            torch.testing.assert_close(x_ours.grad, x_native.grad, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(layer.conv.weight.grad, native.weight.grad, rtol=1e-6, atol=1e-5)
            torch.testing.assert_close(layer.conv.bias.grad, native.bias.grad, rtol=1e-6, atol=1e-5)


# --- weights, from_native, state dicts -------------------------------------------------------


def test_weight_layout_and_round_trip() -> None:
    spec = upsample.UpsampleSpec(3, 5, kernel_size=(2, 4), stride=(3, 1), padding="same", residual="projection")
    weights = random_weights(spec, 11)
    layer = spec.build("torch", weights=weights, fast_path=False)
    assert isinstance(layer, ut.Upsample) and not layer.fast_path
    np.testing.assert_array_equal(layer.conv.weight.detach().numpy(), weights.kernel.transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(layer.conv.bias.detach().numpy(), weights.bias)
    np.testing.assert_array_equal(layer.skip.weight.detach().numpy()[:, :, 0, 0], weights.skip.T)
    assert ut.get_weights(layer).allclose(weights, rtol=0)
    with pytest.raises(ValueError, match="weights.kernel has shape"):
        ut.set_weights(layer, upsample.Weights(weights.kernel[:1], weights.bias, weights.skip))
    with pytest.raises(TypeError, match="got ConvTranspose2d"):
        ut.get_weights(layer.conv)


NATIVE_LAYERS = [
    {"kernel_size": 4, "stride": 2, "padding": 1},
    {"kernel_size": (3, 5), "stride": (2, 3), "padding": (1, 2), "output_padding": (1, 2)},
    {"kernel_size": 1, "stride": 1, "bias": False},
    {"kernel_size": 7, "stride": 4, "padding": 3, "output_padding": 3},
]


@pytest.mark.parametrize("kwargs", NATIVE_LAYERS, ids=range(len(NATIVE_LAYERS)))
def test_from_native_round_trip(kwargs: dict) -> None:
    torch.manual_seed(len(str(kwargs)))
    native = nn.ConvTranspose2d(6, 2, **kwargs)
    spec, weights = ut.from_native(native)
    assert spec == upsample.UpsampleSpec(
        6,
        2,
        kernel_size=kwargs["kernel_size"],
        stride=kwargs["stride"],
        padding=kwargs.get("padding", 0),
        output_padding=kwargs.get("output_padding", 0),
        use_bias=kwargs.get("bias", True),
    )
    for fast_path, size in itertools.product([True, False], [(1, 1), (4, 3)]):
        layer = ut.Upsample(spec, weights=weights, fast_path=fast_path)
        x = torch.randn(3, 6, *size)
        torch.testing.assert_close(quiet(layer, x), native(x), rtol=1e-6, atol=1e-6)


def test_from_native_refusals() -> None:
    """What has no spec (grouped and dilated layers convert: tests/test_groups_builds.py)."""
    native = nn.ConvTranspose2d(4, 4, 3)
    native.padding_mode = "reflect"  # torch refuses it in the constructor; a loaded module can still carry it
    with pytest.raises(ValueError, match="conv.padding_mode must be 'zeros'.*got 'reflect'"):
        ut.from_native(native)
    with pytest.raises(
        TypeError, match=r"module must be one of: .*nn.ConvTranspose1d/2d/3d .*MONAI UpSample.*; got Conv2d"
    ):
        ut.from_native(nn.Conv2d(4, 4, 3))


def test_state_dict_round_trip() -> None:
    spec = upsample.UpsampleSpec(4, 3, kernel_size=3, stride=2, padding=((0, 1), (-1, 2)), residual="projection")
    torch.manual_seed(0)
    trained = ut.Upsample(spec)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    assert set(trained.state_dict()) == {"conv.weight", "conv.bias", "skip.weight"}
    buffer.seek(0)
    restored = ut.Upsample(spec)  # a different random init
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(quiet(restored, x), quiet(trained, x), rtol=0, atol=0)


# --- which path runs ---------------------------------------------------------------------------


def test_native_arguments_and_fast_path_choice() -> None:
    """Torch-expressible crops become ``padding``/``output_padding``; only the fast path skips the conv on 1x1."""
    native = ut.Upsample(upsample.UpsampleSpec(2, 2, kernel_size=4, stride=3, padding=(2, 1), output_padding=(1, 0)))
    assert native.conv.padding == (2, 1) and native.conv.output_padding == (1, 0)
    sliced = ut.Upsample(upsample.UpsampleSpec(2, 2, kernel_size=4, stride=3, padding=((0, 1), (1, 1))))
    assert sliced.conv.padding == (0, 1) and sliced.conv.output_padding == (0, 0)  # only width is native

    calls = []
    conv_forward = native.conv.forward  # wrapped, not hooked: a hook makes the 1x1 input go through conv
    native.conv.forward = lambda x: calls.append(1) or conv_forward(x)  # type: ignore[method-assign]
    native(torch.randn(1, 2, 1, 1))
    assert calls == []
    native.fast_path = False
    native(torch.randn(1, 2, 1, 1))
    assert calls == [1]


def test_runs_on_any_device() -> None:
    """Nothing is tied to the CPU: a module built on the meta device runs every path there."""
    for residual, size, fast_path in itertools.product(["nearest", "projection"], [(1, 1), (2, 3)], [True, False]):
        spec = upsample.UpsampleSpec(3, 3, kernel_size=3, stride=2, padding=((1, -1), (0, 2)), residual=residual)
        layer = ut.Upsample(spec, device="meta", fast_path=fast_path)
        y = quiet(layer, torch.empty(2, 3, *size, device="meta"))
        assert y.device.type == "meta" and tuple(y.shape[2:]) == spec.output_size(size)


# --- compile, export, dtypes -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch internals
def test_torch_compile_matches_eager() -> None:
    spec = upsample.UpsampleSpec(
        3, 4, kernel_size=(3, 2), stride=(2, 3), padding=((1, -1), (0, -1)), residual="projection"
    )
    layer = ut.Upsample(spec, weights=random_weights(spec, 5))
    compiled = torch.compile(layer, fullgraph=True)
    for size in [(1, 1), (3, 4)]:  # the fast path and the sliced conv: two small graphs
        x = torch.randn(2, 3, *size)
        torch.testing.assert_close(quiet(compiled, x), quiet(layer, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (3, 4)])
def test_torch_export(size: tuple[int, int]) -> None:
    """``torch.export`` with a dynamic batch size: the exported program matches eager at another batch size."""
    spec = upsample.UpsampleSpec(3, 3, kernel_size=4, stride=2, padding=((1, -1), (2, 0)), residual="nearest")
    layer = ut.Upsample(spec, weights=random_weights(spec, 6))
    program = torch.export.export(
        layer, (torch.randn(2, 3, *size),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
    )
    x = torch.randn(5, 3, *size)
    torch.testing.assert_close(program.module()(x), quiet(layer, x), rtol=1e-6, atol=1e-6)


def test_float64_and_bfloat16() -> None:
    spec = upsample.UpsampleSpec(4, 4, kernel_size=3, stride=2, padding="same", residual="nearest")
    weights = random_weights(spec, 8)
    for size, fast_path in itertools.product([(1, 1), (3, 2)], [True, False]):
        x = random_input(spec, 2, size, 8)
        expected = reference.forward(spec, weights, x)
        double = ut.Upsample(spec, weights=weights, dtype=torch.float64, fast_path=fast_path)
        y = quiet(double, to_nchw(x).double())
        assert y.dtype == torch.float64
        assert_close(to_nhwc(y), expected, "float64", spec, rtol=1e-12, atol=1e-12)
        half = ut.Upsample(spec, weights=weights, fast_path=fast_path).to(torch.bfloat16)
        with torch.no_grad():
            y = quiet(half, to_nchw(x).to(torch.bfloat16))
        assert y.dtype == torch.bfloat16 and not y.requires_grad
        assert_close(to_nhwc(y), expected, "bfloat16", spec, rtol=3e-2, atol=3e-2)
        assert ut.get_weights(half).allclose(weights, rtol=1e-2, atol=1e-2)


# --- input checks and warnings -----------------------------------------------------------------


def test_input_errors() -> None:
    layer = ut.Upsample(upsample.UpsampleSpec(64, 8, kernel_size=4))
    with pytest.raises(ValueError, match=r"expected NCHW with C=64, got shape \(1, 1, 1, 64\): is this NHWC\?"):
        layer(torch.zeros(1, 1, 1, 64))
    with pytest.raises(ValueError, match=r"rank-4 NCHW \(or rank-3 CHW, unbatched\) tensor, got shape \(2, 64\)"):
        layer(torch.zeros(2, 64))
    with pytest.raises(TypeError, match="floating dtype, got torch.int64"):
        layer(torch.zeros(1, 64, 1, 1, dtype=torch.int64))
    with pytest.raises(TypeError, match="spec must be an upsample UpsampleSpec, got dict"):
        ut.Upsample({"in_channels": 64})


def test_dead_pixel_warning() -> None:
    keras_same = ut.Upsample(upsample.UpsampleSpec(64, 64, kernel_size=3, stride=16, padding="same"))
    x = torch.zeros(1, 64, 1, 1)
    with pytest.warns(upsample.UpsampleWarning, match="247 of 256 output pixels are dead") as record:
        keras_same(x)
    assert record[0].filename == __file__  # points at the caller, not into the library
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_same(x)  # once per input size
        ut.Upsample(upsample.UpsampleSpec.for_size(64, 16))(x)


# --- training ---------------------------------------------------------------------------------


def test_training_lowers_loss() -> None:
    """A pooled feature vector decoded to a 6x6 map: Adam fits the outputs of a fixed random teacher."""
    torch.manual_seed(0)
    spec = upsample.UpsampleSpec.for_size(8, 6, out_channels=2, residual="projection")
    teacher, student = (nn.Sequential(nn.AdaptiveAvgPool2d(1), ut.Upsample(spec), nn.Tanh()) for _ in range(2))
    images = torch.randn(32, 8, 5, 5)
    with torch.no_grad():
        target = teacher(images)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(student(images), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses


# --- hooks, unbatched input, dtypes and bad input (issues 13, 14) ------------------------------

HOOKS = ["spectral_norm", "weight_norm", "forward_hook", "forward_pre_hook"]


def _hook(conv: nn.ConvTranspose2d, hook: str) -> None:
    """Put ``hook`` on ``conv`` in place (legacy spectral and weight norm recompute ``conv.weight`` in a forward
    pre-hook); the power iteration's random vector is drawn from a fixed seed."""
    torch.manual_seed(0)
    if hook == "spectral_norm":
        torch.nn.utils.spectral_norm(conv)
    elif hook == "weight_norm":
        torch.nn.utils.weight_norm(conv)
    elif hook == "forward_hook":
        conv.register_forward_hook(lambda module, args, out: out * 2.0)
    else:
        conv.register_forward_pre_hook(lambda module, args: (args[0] * 0.5,))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch deprecates the legacy weight_norm
@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("size", [(1, 1), (3, 2)])
def test_hooks_on_conv_run_and_train_alike(hook: str, size: tuple[int, int]) -> None:
    """Issue 14: the 1x1 fast path read ``conv.weight`` and skipped ``conv``'s hooks, so legacy spectral norm
    trained the wrong weight. Three SGD steps with each hook give the same parameters on both paths as a
    plain ``nn.ConvTranspose2d`` with the same hook (the framework's own layer is the oracle)."""
    spec = upsample.UpsampleSpec(3, 4, kernel_size=4, stride=2, padding=1)
    weights = random_weights(spec, 11)
    x = to_nchw(random_input(spec, 2, size, 11))
    native = nn.ConvTranspose2d(3, 4, 4, 2, 1)
    modules: list[nn.Module] = [native]
    for fast_path in (True, False):
        modules.append(ut.Upsample(spec, weights=weights, fast_path=fast_path))
    native.load_state_dict(modules[1].conv.state_dict())
    results = []
    for module in modules:
        _hook(module if module is native else module.conv, hook)
        optimiser = torch.optim.SGD(module.parameters(), lr=0.1)
        for _ in range(3):
            optimiser.zero_grad()
            quiet(module, x).square().mean().backward()
            optimiser.step()
        results.append({name.removeprefix("conv."): value.detach() for name, value in module.named_parameters()})
    expected, fast, slow = results
    assert set(fast) == set(expected) and len(expected) >= 2
    for name, value in expected.items():
        torch.testing.assert_close(fast[name], value, rtol=1e-5, atol=1e-6, msg=f"fast path, {name}")
        torch.testing.assert_close(slow[name], value, rtol=1e-5, atol=1e-6, msg=f"native path, {name}")


def test_hooks_choose_the_native_path_only_while_registered() -> None:
    spec = upsample.UpsampleSpec(2, 2, kernel_size=3)
    layer = ut.Upsample(spec)
    calls: list[int] = []
    handle = layer.conv.register_forward_hook(lambda *_: calls.append(1))
    layer(torch.randn(1, 2, 1, 1))
    assert calls == [1]
    handle.remove()
    layer(torch.randn(1, 2, 1, 1))
    assert calls == [1]


@pytest.mark.parametrize("size", [(1, 1), (3, 2)])
def test_unbatched_input_as_torch_layers_take_it(size: tuple[int, int]) -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=3, stride=2, padding=((1, -1), (0, 2)), residual="projection")
    weights = random_weights(spec, 12)
    x = random_input(spec, 1, size, 12)
    layer = ut.Upsample(spec, weights=weights)
    y = quiet(layer, to_nchw(x)[0])
    assert y.dim() == 3
    assert_close(to_nhwc(y[None]), reference.forward(spec, weights, x), "unbatched", spec)


def test_dtype_mismatch_is_our_error_unless_autocast() -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=2)
    layer = ut.Upsample(spec)
    for size in [(1, 1), (2, 2)]:
        with pytest.raises(TypeError, match=r"x has dtype torch.float64 but this Upsample's parameters are"):
            layer(torch.randn(1, 3, *size, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert quiet(layer, torch.randn(1, 3, 2, 2)).dtype == torch.bfloat16


def test_bad_inputs_name_the_argument() -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=2)
    layer = ut.Upsample(spec)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        layer(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(TypeError, match="weights must be an upsample.Weights, got dict"):
        ut.set_weights(layer, {"kernel": np.zeros((2, 2, 3, 4))})
    with pytest.raises(TypeError, match="weights must be an upsample.Weights, got dict"):
        spec.build("torch", weights={"kernel": np.zeros((2, 2, 3, 4))})
    with pytest.raises(ValueError, match="not initialised yet"):
        ut.from_native(nn.LazyConvTranspose2d(4, 3))
    with pytest.raises(ValueError, match=r"x: expected NCHW with C=3"):  # checked while Dynamo traces
        torch.compile(layer)(torch.randn(1, 5, 2, 2))
    with pytest.raises(Exception, match=r"x: expected NCHW with C=3"):  # fullgraph: Dynamo wraps our message
        torch.compile(layer, fullgraph=True)(torch.randn(1, 5, 2, 2))


def test_from_native_documented_call() -> None:
    conv = nn.ConvTranspose2d(3, 4, 3, 2, 1, 1)
    spec, weights = ut.from_native(conv)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(ut.Upsample(spec, weights=weights)(x), conv(x), rtol=1e-6, atol=1e-6)


def test_build_without_weights_is_the_canonical_init() -> None:
    """Issue 14: one rule in every backend: ``spec.build(backend)`` holds ``init_weights(spec, seed=0)``."""
    spec = upsample.UpsampleSpec(3, 4, kernel_size=3, stride=2, residual="projection")
    assert ut.get_weights(spec.build("torch")).allclose(upsample.init_weights(spec, seed=0))


TRACED_SPECS = {
    "transposed-nearest": upsample.UpsampleSpec(3, 3, kernel_size=4, stride=2, padding=1, residual="nearest"),
    "transposed-projection": upsample.UpsampleSpec(3, 5, kernel_size=3, stride=3, residual="projection"),
    "transposed-dead": upsample.UpsampleSpec(3, 4, kernel_size=3, stride=16, padding="same"),
    "subpixel": upsample.SubpixelSpec(3, 4, scale=(2, 3), kernel_size=(3, 2), residual="projection"),
    "resize-nearest": upsample.ResizeSpec(3, 3, scale=2, method="nearest", residual="nearest"),
    "resize-bilinear": upsample.ResizeSpec(3, 4, scale=(3, 2), method="bilinear", residual="projection"),
    "head": upsample.plan(3, 8, out_channels=2, norm="batch", final_activation="tanh"),
}


@pytest.mark.parametrize("name", sorted(TRACED_SPECS))
def test_legacy_onnx_export_traces_without_tracer_warnings(name: str) -> None:
    """``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer) raises no ``TracerWarning`` from our
    input checks, dead-pixel warning or residual gather (turned into errors here), for every kind and a head,
    batched and unbatched; onnxruntime runs the graph like the eager layer. While tracing, a 1x1 input takes
    the convolution, not the matmul path (a graph that holds at any size); the slice-and-pad of crops torch
    cannot express still reads the traced sizes, so these specs use crops torch expresses."""
    pytest.importorskip("onnxruntime")
    import onnxruntime

    spec = TRACED_SPECS[name]
    layer = spec.build("torch")
    layer.eval()
    for shape in [(2, 3, 1, 1), (2, 3, 3, 2), (3, 2, 2)][: 2 if name == "head" else 3]:
        x = torch.randn(*shape)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)
            warnings.filterwarnings("error", category=torch.jit.TracerWarning)
            torch.onnx.export(layer, (x,), buffer, dynamo=False)
        session = onnxruntime.InferenceSession(buffer.getvalue())
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)
            expected = layer(x).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"{name} {shape}")
    if getattr(spec, "residual", None) is not None:  # the traced gather is ops on the traced sizes: it holds
        traced = torch.jit.trace(layer, torch.randn(1, 3, 3, 2), check_trace=False)
        x = torch.randn(2, 3, 5, 4)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)
            torch.testing.assert_close(traced(x), layer(x), rtol=1e-5, atol=1e-5)
