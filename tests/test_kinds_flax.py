"""The Flax sub-pixel and resize layers (issue 15), linen and NNX, against the NumPy reference (forward,
input and weight gradients) and against Flax's own ``Conv(padding="SAME")`` and ``jax.image.resize``;
ICNR's nearest-upsampling property; weights trained in PyTorch load into both APIs with torch's outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cases import require_backend
from hypothesis import given, settings
from kind_cases import CASES, SWEEP, Spec, case_id, expected, inputs, random_cases, weights

import upsample
from upsample.conv_specs import SubpixelSpec

try:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf
except ImportError:  # the fixture below skips (locally) or fails (CI) with the install hint
    pass

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True, scope="module")
def _flax_installed() -> None:
    require_backend("flax")


def linen(spec: Spec, w: upsample.Weights, **kwargs: Any) -> tuple[Any, Any]:
    module = (uf.Subpixel if isinstance(spec, SubpixelSpec) else uf.ResizeConv)(spec, **kwargs)
    return (lambda p, x: module.apply({"params": p}, x)), uf.to_variables(spec, w)["params"]


def nnx_layer(spec: Spec, w: upsample.Weights, **kwargs: Any) -> tuple[Any, Any]:
    graphdef, params = nnx.split(uf.build(spec, weights=w, api="nnx", **kwargs), nnx.Param)
    return (lambda p, x: nnx.merge(graphdef, p)(x)), params


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize(("spec", "size"), CASES, ids=case_id)
def test_forward_and_gradients_match_reference(spec: Spec, size: tuple[int, int], api: str) -> None:
    # the 1x1 fast path on linen, the native conv on NNX: both paths are covered on 1x1 inputs
    check_against_reference(spec, size, api, fast_path=api == "linen", seed=0)


@settings(max_examples=6, deadline=None)
@given(random_cases())
def test_random_cases_match_reference(case: tuple[Spec, tuple[int, int], int]) -> None:
    spec, size, seed = case
    check_against_reference(spec, size, "nnx", fast_path=True, seed=seed)


def check_against_reference(spec: Spec, size: tuple[int, int], api: str, fast_path: bool, seed: int) -> None:
    w = weights(spec, seed)
    x, grad_y = inputs(spec, size, seed=seed)
    want = expected(spec, w, x, grad_y)
    apply, params = linen(spec, w, fast_path=fast_path) if api == "linen" else nnx_layer(spec, w, fast_path=fast_path)
    y, pullback = jax.vjp(apply, params, x)
    grad_params, grad_x = pullback(jnp.asarray(grad_y))
    grad_params = nnx.to_pure_dict(grad_params) if isinstance(grad_params, nnx.State) else grad_params
    np.testing.assert_allclose(y, want["y"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad_x, want["grad_x"], rtol=RTOL, atol=ATOL)
    conv = grad_params.get("conv", {})  # none: a resize alone
    got = {"kernel": conv.get("kernel"), "bias": conv.get("bias")}
    got["skip"] = grad_params["skip"]["kernel"] if "skip" in grad_params else None
    for name, value in got.items():
        ref = want[f"grad_{name}"]
        assert (value is None) == (ref is None), name
        if ref is not None:
            np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL, err_msg=name)


JAX_METHODS = {
    ("nearest", "half_pixel", "round_prefer_ceil", -0.75, False): "nearest",
    ("linear", "half_pixel", "round_prefer_ceil", -0.75, False): "bilinear",
    ("cubic", "half_pixel", "round_prefer_ceil", -0.5, True): "bicubic",
}
"""The spec settings ``jax.image.resize``'s methods compute (Keys' ``a = -0.5``, its weights renormalised over the
taps inside the input: ``exclude_outside``)."""


def _jax_method(spec: Spec) -> str | None:
    fields = ("method", "coordinates", "nearest_mode", "cubic_a", "exclude_outside")
    return JAX_METHODS.get(tuple(getattr(spec, name) for name in fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec",
    [
        s
        for s in SWEEP
        if s.residual is None
        and (isinstance(s, SubpixelSpec) or (_jax_method(s) and (s.integer_scale is not None or s.size is not None)))
    ],
    ids=case_id,
)
def test_flax_native_conv_same_and_jax_resize(spec: Spec) -> None:
    """Flax's own ``Conv(padding="SAME")`` fed the canonical kernel, then the CRD reshape (torch's order,
    written with einops-style axes here) or ``jax.image.resize`` (to a size: a spec's integer factor or size, not
    a non-integer factor, whose coordinates map by the factor), gives the layer's numbers."""
    w = weights(spec)
    x, _ = inputs(spec, (3, 4))
    run = lambda v: v  # noqa: E731  # a resize alone
    if w.kernel is not None:
        conv = nn.Conv(w.kernel.shape[3], spec.kernel_size, padding="SAME", use_bias=spec.use_bias)
        params = {"kernel": w.kernel, **({"bias": w.bias} if spec.use_bias else {})}
        run = lambda v: conv.apply({"params": params}, v)  # noqa: E731
    if isinstance(spec, SubpixelSpec):
        rh, rw = spec.scale
        z = np.asarray(run(x))
        b, h, wd, _ = z.shape
        native = z.reshape(b, h, wd, -1, rh, rw).transpose(0, 1, 4, 2, 5, 3).reshape(b, h * rh, wd * rw, -1)
    else:
        method = _jax_method(spec)
        shape = (x.shape[0], *spec.output_size((3, 4)), x.shape[3])  # jax.image.resize maps by size / input
        native = np.asarray(run(jax.image.resize(x, shape, method)))
    for api in ("flax", "nnx"):
        np.testing.assert_allclose(np.asarray(spec.build(api, weights=w)(x)), native, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", [s for s in SWEEP if isinstance(s, SubpixelSpec)][:3], ids=case_id)
def test_icnr_is_nearest_upsampling_of_a_conv(spec: SubpixelSpec) -> None:
    w = upsample.init_weights(spec, seed=1, scheme="icnr")
    bare = SubpixelSpec(spec.in_channels, spec.out_channels, spec.scale, spec.kernel_size, use_bias=spec.use_bias)
    x, _ = inputs(spec, (3, 4))
    rh, rw = spec.scale
    small = jax.lax.conv_general_dilated(
        x, w.kernel[..., :: rh * rw], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    nearest = np.repeat(np.repeat(np.asarray(small), rh, axis=1), rw, axis=2)
    for api in ("flax", "nnx"):
        layer = bare.build(api, weights=upsample.Weights(w.kernel, w.bias))
        np.testing.assert_allclose(np.asarray(layer(x)), nearest, rtol=1e-6, atol=1e-6)


def test_weights_round_trip_dispatch_and_type_checks() -> None:
    for spec in SWEEP[:2] + SWEEP[5:7]:
        w = weights(spec)
        for api in ("flax", "nnx"):
            layer = spec.build(api, weights=w)
            assert uf.get_weights(layer).allclose(w, rtol=0)
            other = upsample.init_weights(spec, seed=4)
            assert uf.get_weights(uf.set_weights(layer, other)).allclose(other, rtol=0)
    assert isinstance(upsample.UpsampleSpec(2, kernel_size=2, stride=2).build("nnx"), uf.UpsampleNNX)
    with pytest.raises(TypeError, match="spec must be an upsample ResizeSpec, got SubpixelSpec"):
        uf.ResizeConvNNX(SubpixelSpec(2), rngs=nnx.Rngs(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [SWEEP[1], SWEEP[6]], ids=case_id)
def test_weights_trained_in_torch_give_torch_outputs(spec: Spec) -> None:
    require_backend("torch")
    import torch

    torch.manual_seed(0)
    layer = spec.build("torch", weights=weights(spec))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x, _ = inputs(spec, (3, 4))
    x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    for _ in range(3):  # a few steps towards a smooth target
        optimizer.zero_grad()
        loss = (layer(x_t) - 1.0).square().mean()
        loss.backward()
        optimizer.step()
    from upsample.backends import torch as ut

    trained = ut.get_weights(layer)
    want = layer(x_t).detach().numpy().transpose(0, 2, 3, 1)
    for api in ("flax", "nnx"):
        np.testing.assert_allclose(np.asarray(spec.build(api, weights=trained)(x)), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_from_native_conv_and_a_users_shuffle(order: str) -> None:
    """An NNX ``Conv(padding="SAME")`` followed by the user's own reshape in either order converts to a spec
    whose layers give the user's numbers; a linen ``Conv`` before a bilinear resize likewise."""
    conv = nnx.Conv(3, 2 * 4, (3, 2), padding="SAME", rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 3)).astype(np.float32)
    z = np.asarray(conv(x)).reshape(2, 3, 4, 2, 2, 2)  # CRD: channels (c, i, j); DCR: channels (i, j, c)
    native = z.transpose(0, 1, 4, 2, 5, 3) if order == "CRD" else z.transpose(0, 1, 3, 2, 4, 5)
    native = native.reshape(2, 6, 8, 2)
    spec, w = uf.from_native(conv, scale=2, order=order)
    assert spec == SubpixelSpec(3, 2, scale=2, kernel_size=(3, 2))
    np.testing.assert_allclose(np.asarray(spec.build("nnx", weights=w)(x)), native, rtol=1e-5, atol=1e-6)

    module = nn.Conv(2, (2, 2), padding="SAME")
    params = module.init(jax.random.key(0), x)
    resized = jax.image.resize(x, (2, 6, 12, 3), "bilinear")
    spec, w = uf.from_native(module, params, scale=(2, 3), method="bilinear")
    assert spec == upsample.ResizeSpec(3, 2, scale=(2, 3), method="bilinear", kernel_size=2)
    want = np.asarray(module.apply(params, resized))
    np.testing.assert_allclose(np.asarray(spec.build("flax", weights=w)(x)), want, rtol=1e-5, atol=1e-6)


def test_from_native_refuses_what_has_no_spec() -> None:
    with pytest.raises(ValueError, match="conv.strides must be the default"):
        uf.from_native(nnx.Conv(2, 8, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0)), scale=2)
    with pytest.raises(ValueError, match="conv.padding must be 'SAME'"):
        uf.from_native(nnx.Conv(2, 8, (3, 3), padding="VALID", rngs=nnx.Rngs(0)), scale=2)
    with pytest.raises(ValueError, match="unbound linen Conv holds no weights"):
        uf.from_native(nn.Conv(8, 3), scale=2)
