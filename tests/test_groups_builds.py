"""Grouped and dilated layers in torch and Flax (linen and NNX): every spec of ``group_cases`` against the
float64 NumPy reference on both paths (``fast_path`` on and off), gradients on FCN's 64-channel depthwise stage,
the bilinear scheme against each framework's own bilinear resize, and ``from_native`` of the frameworks' own
grouped and dilated layers (MONAI's ``deconvgroup`` among them) against those layers' outputs. Keras:
tests/test_groups_keras.py; ONNX: tests/test_onnx_groups.py; every build against every other:
tests/test_equivalence.py."""

from __future__ import annotations

import warnings
from typing import Any

import group_cases
import kind_cases
import numpy as np
import pytest
from cases import require_backend

from upsample import UpsampleSpec, init_weights, reference
from upsample.weights import Weights

RTOL, ATOL = 1e-4, 1e-5
RNG_SEED = 5


def _input(spec: Any, size: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, *size, spec.in_channels)).astype(np.float32)


def _quiet(layer: Any, x: Any) -> Any:
    """``layer(x)`` without the dead-pixel warnings some cases raise on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return layer(x)


# --- torch ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", group_cases.SPECS, ids=group_cases.IDS)
def test_torch_layers_compute_the_reference(spec: Any) -> None:
    require_backend("torch")
    import torch

    for seed, size in enumerate(group_cases.SIZES[spec.spatial_dims]):
        weights = kind_cases.weights(spec, seed)
        x = _input(spec, size, seed)
        expected = reference.forward(spec, weights, x)
        for fast_path in (True, False):
            layer = spec.build("torch", weights=weights, fast_path=fast_path)
            y = _quiet(layer, torch.from_numpy(np.moveaxis(x, -1, 1).copy())).detach().numpy()
            np.testing.assert_allclose(np.moveaxis(y, 1, -1), expected, rtol=RTOL, atol=ATOL, err_msg=spec.to_json())


def test_torch_layer_is_torchs_own_grouped_dilated_layer() -> None:
    """The parameters torch users know: ``conv`` is an ``nn.ConvTranspose2d`` with the spec's groups and dilation."""
    require_backend("torch")
    spec = UpsampleSpec(4, 6, kernel_size=3, stride=2, padding=1, groups=2, dilation=2)
    conv = spec.build("torch").conv
    assert (conv.groups, conv.dilation, tuple(conv.weight.shape)) == (2, (2, 2), (4, 3, 3, 3))


def _torch_gradients(spec: Any, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, ...]:
    import torch

    from upsample.backends import torch as ut

    layer = ut.build(spec, weights=weights)
    inputs = torch.from_numpy(np.moveaxis(x, -1, 1).copy()).requires_grad_()
    y = _quiet(layer, inputs)
    y.backward(torch.from_numpy(np.moveaxis(grad_y, -1, 1).copy()))
    kernel = layer.conv.weight.grad.numpy().transpose(*range(2, 2 + spec.spatial_dims), 0, 1)
    return np.moveaxis(inputs.grad.numpy(), 1, -1), kernel, layer.conv.bias.grad.numpy()


def _flax_gradients(spec: Any, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> tuple[np.ndarray, ...]:
    import jax
    import jax.numpy as jnp

    from upsample.backends import flax as uf

    module = uf.Upsample(spec)
    params = uf.to_variables(spec, weights)["params"]
    y, pullback = jax.vjp(lambda p, xs: module.apply({"params": p}, xs), params, jnp.asarray(x))
    grad_params, grad_x = pullback(jnp.asarray(grad_y))
    kernel = np.asarray(grad_params["conv"]["kernel"])[::-1, ::-1]  # stored flipped
    return np.asarray(grad_x), kernel, np.asarray(grad_params["conv"]["bias"])


@pytest.mark.parametrize("build", ["torch", "flax"])
def test_fcn_depthwise_stage_gradients(build: str) -> None:
    """FCN's 64-channel depthwise k4 s2 p1 stage (left out of the equivalence suite for its size): output, input
    and weight gradients against the reference's VJP."""
    require_backend(build)
    spec = group_cases.FIELD[0]
    weights = kind_cases.weights(spec, 3)
    x = _input(spec, (5, 4), 3)
    expected_y = reference.forward(spec, weights, x)
    grad_y = np.random.default_rng(4).normal(size=expected_y.shape).astype(np.float32)
    grad_x, grad_weights = reference.vjp(spec, weights, x, grad_y)
    got = (_torch_gradients if build == "torch" else _flax_gradients)(spec, weights, x, grad_y)
    expected = (grad_x, grad_weights.kernel, grad_weights.bias)
    for name, mine, theirs in zip(("x", "kernel", "bias"), got, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=1e-4, err_msg=name)


# --- Flax -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", group_cases.SPECS, ids=group_cases.IDS)
def test_flax_layers_compute_the_reference(spec: Any) -> None:
    require_backend("flax")
    import jax.numpy as jnp

    for seed, size in enumerate(group_cases.SIZES[spec.spatial_dims]):
        weights = kind_cases.weights(spec, seed)
        x = _input(spec, size, seed)
        expected = reference.forward(spec, weights, x)
        for api, fast_path in (("flax", True), ("nnx", False)):  # both paths, both APIs (they share the code)
            y = np.asarray(_quiet(spec.build(api, weights=weights, fast_path=fast_path), jnp.asarray(x)))
            np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL, err_msg=f"{api} {spec.to_json()}")


@pytest.mark.parametrize("spec", [group_cases.FIELD[1], group_cases.FIELD[4], group_cases.CONV[1]], ids=str)
def test_flax_initialises_grouped_parameters_in_both_apis(spec: Any) -> None:
    """Flax's own initialisation (linen ``init``, NNX ``rngs``) gives the canonical grouped shapes, and both trees
    read back as weights of the spec."""
    require_backend("flax")
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf

    linen, nnx_class = (uf.Upsample, uf.UpsampleNNX) if spec.KIND == "transposed" else (uf.Subpixel, uf.SubpixelNNX)
    x = jnp.ones((1, *group_cases.SIZES[spec.spatial_dims][1], spec.in_channels))
    module = linen(spec)
    variables = _quiet(lambda xs: module.init(jax.random.key(0), xs), x)
    kernel = variables["params"]["conv"]["kernel"]
    assert kernel.shape == spec.weight_shapes()["kernel"] and float(jnp.abs(kernel).max()) > 0
    uf.get_weights((module, variables)).check(spec)
    layer = nnx_class(spec, rngs=nnx.Rngs(0))
    assert layer.conv.kernel[...].shape == spec.weight_shapes()["kernel"]
    uf.get_weights(layer).check(spec)


# --- the bilinear scheme against each framework's own bilinear resize -------------------------------

BILINEAR = [(2, 1), (2, 2), (4, 2), (2, 3)]
"""``(stride, spatial_dims)`` of the depthwise ``k = 2s``, crops ``s / 2`` stages checked."""


def _bilinear_case(stride: int, rank: int) -> tuple[UpsampleSpec, Weights, np.ndarray, tuple[slice, ...]]:
    spec = UpsampleSpec(3, 3, 2 * stride, stride, stride // 2, groups=3, spatial_dims=rank)
    x = np.random.default_rng(stride + rank).normal(size=(2, *(5, 4, 3)[:rank], 3)).astype(np.float32)
    border = stride // 2
    inside = (slice(None), *(slice(border, n * stride - border) for n in x.shape[1:-1]), slice(None))
    return spec, init_weights(spec, scheme="bilinear"), x, inside


@pytest.mark.parametrize(("stride", "rank"), BILINEAR)
def test_bilinear_scheme_is_torchs_bilinear_upsampling(stride: int, rank: int) -> None:
    """Equal to ``F.interpolate(..., align_corners=False)`` except the outer ``s / 2`` pixels per side, where the
    transposed convolution reads zeros and torch clamps to the edge (docs/groups-and-dilation.md)."""
    require_backend("torch")
    import torch
    import torch.nn.functional as F

    spec, weights, x, inside = _bilinear_case(stride, rank)
    nchw = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    y = np.moveaxis(_quiet(spec.build("torch", weights=weights), nchw).detach().numpy(), 1, -1)
    mode = ("linear", "bilinear", "trilinear")[rank - 1]
    resized = np.moveaxis(F.interpolate(nchw, scale_factor=stride, mode=mode, align_corners=False).numpy(), 1, -1)
    np.testing.assert_allclose(y[inside], resized[inside], rtol=RTOL, atol=ATOL)
    assert np.abs(y - resized).max() > 1e-3  # the border: zeros read, not the edge repeated


@pytest.mark.parametrize(("stride", "rank"), BILINEAR)
def test_bilinear_scheme_is_jaxs_bilinear_upsampling(stride: int, rank: int) -> None:
    """As for torch, against ``jax.image.resize(..., "linear")``, in both Flax APIs."""
    require_backend("flax")
    import jax
    import jax.numpy as jnp

    spec, weights, x, inside = _bilinear_case(stride, rank)
    resized = np.asarray(
        jax.image.resize(x, (2, *(n * stride for n in x.shape[1:-1]), 3), "linear")  # half-pixel, edges clamped
    )
    for api in ("flax", "nnx"):
        y = np.asarray(_quiet(spec.build(api, weights=weights), jnp.asarray(x)))
        np.testing.assert_allclose(y[inside], resized[inside], rtol=RTOL, atol=ATOL, err_msg=api)
        assert np.abs(y - resized).max() > 1e-3


# --- the frameworks' own grouped and dilated layers -------------------------------------------------


def _torch_modules() -> list[Any]:
    from torch import nn

    return [
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2),
        nn.ConvTranspose1d(4, 2, 16, stride=8, padding=4, groups=2),
        nn.ConvTranspose3d(3, 3, 3, stride=2, padding=(2, 1, 2), dilation=(2, 1, 2), bias=False),
        # MONAI UpSample(spatial_dims=3, in_channels=4, scale_factor=2, mode="deconvgroup"): a ConvTranspose3d with
        # groups = in_channels, kernel_size = stride = scale_factor (monai/networks/blocks/upsample.py)
        nn.ConvTranspose3d(4, 4, kernel_size=2, stride=2, groups=4),
        nn.Sequential(nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), nn.PixelShuffle(2)),
        nn.Sequential(nn.Conv2d(4, 16, 2, padding="same", dilation=3, groups=4), nn.PixelShuffle(2)),
        nn.Sequential(
            nn.Upsample(scale_factor=2, mode="trilinear"), nn.Conv3d(4, 2, 3, padding=2, dilation=2, groups=2)
        ),  # noqa: E501
    ]


@pytest.mark.parametrize("index", range(7))
def test_torch_from_native_reads_groups_and_dilation(index: int) -> None:
    require_backend("torch")
    import torch

    from upsample.backends import torch as ut

    torch.manual_seed(index)
    module = _torch_modules()[index]
    spec, weights = ut.from_native(module)
    conv = module if not isinstance(module, torch.nn.Sequential) else next(m for m in module if hasattr(m, "groups"))
    assert (spec.groups, spec.dilation) == (conv.groups, tuple(conv.dilation))
    x = torch.randn(2, spec.in_channels, *(3, 4, 2)[: spec.spatial_dims])
    with torch.no_grad():
        expected = module(x).numpy()
        got = _quiet(ut.build(spec, weights=weights), x).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def _flax_transposed(api: str, padding: Any, dilation: Any) -> Any:
    from flax import linen as nn
    from flax import nnx

    if api == "linen":
        return nn.ConvTranspose(3, (3, 2), (2, 1), padding=padding, kernel_dilation=dilation)
    return nnx.ConvTranspose(4, 3, (3, 2), (2, 1), padding=padding, kernel_dilation=dilation, rngs=nnx.Rngs(1))


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("padding", ["SAME", "VALID", ((3, 1), (1, 0))], ids=["same", "valid", "pads"])
@pytest.mark.parametrize("dilation", [2, (3, 2)], ids=["d2", "d3x2"])
def test_flax_from_native_reads_kernel_dilation(api: str, padding: Any, dilation: Any) -> None:
    require_backend("flax")
    import jax

    from upsample.backends import flax as uf

    conv = _flax_transposed(api, padding, dilation)
    x = jax.random.normal(jax.random.key(2), (2, 3, 4, 4))
    if api == "linen":
        params = conv.init(jax.random.key(3), x)
        expected, (spec, weights) = conv.apply(params, x), uf.from_native(conv, params)
    else:
        expected, (spec, weights) = conv(x), uf.from_native(conv)
    assert spec.dilation == ((dilation,) * 2 if isinstance(dilation, int) else dilation)
    got = _quiet(uf.build(spec, weights=weights), x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=RTOL, atol=ATOL)


def test_flax_from_native_reads_a_grouped_dilated_conv_and_refuses_dcr() -> None:
    require_backend("flax")
    import jax
    from flax import linen as nn

    from upsample.backends import flax as uf
    from upsample.backends.flax.conv import pixel_shuffle

    conv = nn.Conv(8, (3, 3), padding="SAME", kernel_dilation=2, feature_group_count=2)
    x = jax.random.normal(jax.random.key(0), (2, 4, 5, 4))
    params = conv.init(jax.random.key(1), x)
    spec, weights = uf.from_native(conv, params, scale=2)
    assert (spec.in_channels, spec.groups, spec.dilation) == (4, 2, (2, 2))
    expected = pixel_shuffle(conv.apply(params, x), (2, 2), 2)
    np.testing.assert_allclose(np.asarray(_quiet(uf.build(spec, weights=weights), x)), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="order must be 'CRD' for a grouped Conv"):
        uf.from_native(conv, params, scale=2, order="DCR")
