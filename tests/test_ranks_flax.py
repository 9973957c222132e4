"""Flax layers and heads (linen and NNX) at 1 and 3 spatial axes.

Oracles: the NumPy reference (forward, input and weight gradients; heads: ``upsample.head_reference`` in
training mode with running statistics) and Flax's own ``ConvTranspose`` (``transpose_kernel=True``: Flax flips
the kernel itself) and ``Conv(padding="SAME")`` with ``jax.image.resize`` and a pixel shuffle written here by
index, fed converted weights. Cases are sampled, not swept: every kind and residual mode at each rank, one-pixel
(the matmul path) and larger inputs, each API and both the fast and the native paths.
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
from kind_cases import Spec, expected, inputs, weights

import upsample
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec, head_reference
from upsample.head import Norm

try:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf
    from upsample.backends.flax import head as flax_head
except ImportError:  # the fixture below skips (locally) or fails (CI) with the install hint
    pass

RTOL, ATOL = 1e-4, 1e-5
pytestmark = pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")


@pytest.fixture(autouse=True, scope="module")
def _flax_installed() -> None:
    require_backend("flax")


SPECS, SIZES = rank_cases.SPECS, rank_cases.SIZES
PATHS = list(itertools.product(("linen", "nnx"), (True, False)))
CASES = [  # each spec and size on one (api, fast_path), cycling so every combination meets every kind
    (spec, size, *PATHS[(2 * i + j) % len(PATHS)])
    for i, spec in enumerate(SPECS)
    for j, size in enumerate(SIZES[spec.spatial_dims])
]


def spec_ids(specs: list[Any]) -> list[str]:
    return [f"{spec.KIND}-{spec.spatial_dims}d-{i}" for i, spec in enumerate(specs)]


def case_id(case: Any) -> str:
    spec, size, api, fast_path = case
    return f"{spec.KIND}-{'x'.join(map(str, size))}-{api}-{'fast' if fast_path else 'native'}"


def pure(spec: Spec, w: upsample.Weights, api: str, **kwargs: Any) -> tuple[Any, Any]:
    """``(fn(params, x), params)`` of the layer in ``api``: a pure function ``jax.vjp`` differentiates."""
    if api == "linen":
        module, variables = uf.build(spec, weights=w, api="linen", **kwargs).unbind()
        return (lambda p, x: module.apply({"params": p}, x)), variables["params"]
    graph, params = nnx.split(uf.build(spec, weights=w, api="nnx", **kwargs), nnx.Param)
    return (lambda p, x: nnx.merge(graph, p)(x)), params


def canonical_gradients(spec: Spec, api: str, grads: Any) -> upsample.Weights:
    """Parameter gradients read back as canonical arrays by the adapter's own conversion."""
    if api == "linen":
        module = uf.build(spec, api="linen").unbind()[0]
        return uf.get_weights((module, {"params": grads}))
    layer = uf.build(spec, api="nnx")
    nnx.update(layer, grads)
    return uf.get_weights(layer)


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_forward_and_gradients_match_reference(case: tuple[Spec, tuple[int, ...], str, bool]) -> None:
    spec, size, api, fast_path = case
    w = weights(spec, seed=1)
    x, grad_y = inputs(spec, size, seed=2)
    want = expected(spec, w, x.astype(np.float64), grad_y.astype(np.float64))
    fn, params = pure(spec, w, api, fast_path=fast_path)
    y, backward = jax.vjp(jax.jit(fn), params, jnp.asarray(x))
    grad_params, grad_x = backward(jnp.asarray(grad_y))
    got = canonical_gradients(spec, api, grad_params)
    np.testing.assert_allclose(y, want["y"], rtol=RTOL, atol=ATOL, err_msg="output")
    np.testing.assert_allclose(grad_x, want["grad_x"], rtol=RTOL, atol=ATOL, err_msg="input gradient")
    for name, array in zip(("kernel", "bias", "skip"), got.arrays(), strict=True):
        reference = want[f"grad_{name}"]
        assert (array is None) == (reference is None), name
        if reference is not None:
            np.testing.assert_allclose(array, reference, rtol=RTOL, atol=ATOL, err_msg=f"{name} gradient")


# --- Flax's own layers fed converted weights ------------------------------------------------------


def shuffled_by_index(z: np.ndarray, scale: tuple[int, ...], channels: int) -> np.ndarray:
    """The CRD pixel shuffle written per output pixel (MONAI's formula): output ``(o_1..o_d, c)`` reads conv
    channel ``c * prod(r) + flat(o_1 % r_1, ..., o_d % r_d)`` at pixel ``(o_1 // r_1, ..., o_d // r_d)``."""
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


def flax_own(spec: Spec, w: upsample.Weights, x: np.ndarray) -> np.ndarray:
    """The spec's convolution step (no residual) by Flax's own layers and ``jax.image.resize``."""
    bias = None if w.bias is None else {"bias": jnp.asarray(w.bias)}
    if isinstance(spec, UpsampleSpec):  # transpose_kernel=True takes torch's orientation (C_out, C_in) unflipped
        pads = [(k - 1 - begin, k - 1 - end) for (begin, end), k in zip(spec.crops, spec.kernel_size, strict=True)]
        conv = nn.ConvTranspose(
            spec.out_channels, spec.kernel_size, spec.stride, padding=pads, transpose_kernel=True,
            use_bias=spec.use_bias,
        )  # fmt: skip
        params = {"kernel": jnp.asarray(np.swapaxes(w.kernel, -1, -2)), **(bias or {})}
        return np.asarray(conv.apply({"params": params}, jnp.asarray(x)))
    conv = nn.Conv(spec.conv_channels, spec.kernel_size, padding="SAME", use_bias=spec.use_bias)
    params = {"kernel": jnp.asarray(w.kernel), **(bias or {})}
    if isinstance(spec, SubpixelSpec):
        z = np.asarray(conv.apply({"params": params}, jnp.asarray(x)))
        return shuffled_by_index(z, spec.scale, spec.out_channels)
    batch, *size, channels = x.shape
    resized = (batch, *(n * r for n, r in zip(size, spec.scale, strict=True)), channels)
    return np.asarray(conv.apply({"params": params}, jax.image.resize(jnp.asarray(x), resized, spec.method)))


NATIVE_SPECS = [  # crops within 0..k-1 (lax pads >= 0: XLA:CPU gets negative low pads wrong, openxla/xla#48713)
    UpsampleSpec(4, 3, kernel_size=(16,), stride=8, padding=4),
    UpsampleSpec(3, 2, kernel_size=(5,), stride=3, padding=((1, 3),)),
    SubpixelSpec(3, 2, scale=(3,), kernel_size=2),
    ResizeSpec(3, 2, scale=(2,), method="bilinear", kernel_size=3),
    UpsampleSpec(3, 2, kernel_size=(4, 3, 2), stride=(2, 1, 2), padding=((1, 1), (1, 0), (0, 0)), spatial_dims=3),
    SubpixelSpec(3, 2, scale=(2, 1, 2), kernel_size=(3, 1, 2)),
    ResizeSpec(3, 2, scale=(1, 2, 2), method="nearest", kernel_size=(1, 3, 2)),
    ResizeSpec(2, 3, scale=2, method="bilinear", kernel_size=2, spatial_dims=3),
]
TRANSPOSED = [spec for spec in NATIVE_SPECS if isinstance(spec, UpsampleSpec)]


@pytest.mark.parametrize("spec", NATIVE_SPECS, ids=spec_ids(NATIVE_SPECS))
def test_matches_flax_own_layers(spec: Spec) -> None:
    w = weights(spec, seed=3)
    size = (4,) if spec.spatial_dims == 1 else (2, 3, 2)
    x, _ = inputs(spec, size, seed=4)
    want = flax_own(spec, w, x)
    for api in ("linen", "nnx"):
        got = np.asarray(uf.build(spec, weights=w, api=api)(jnp.asarray(x)))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=api)


# --- weights, from_native, unbatched input, warnings ----------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=spec_ids(SPECS))
def test_get_and_set_weights_round_trip(spec: Spec) -> None:
    first, second = weights(spec, seed=5), weights(spec, seed=6)
    x, _ = inputs(spec, SIZES[spec.spatial_dims][1], seed=7)
    for api in ("linen", "nnx"):
        layer = uf.build(spec, weights=first, api=api)
        assert uf.get_weights(layer).allclose(first, rtol=0)
        layer = uf.set_weights(layer, second)
        assert uf.get_weights(layer).allclose(second, rtol=0)
    y = upsample.reference.forward(spec, second, x.astype(np.float64))  # NNX updated in place computes with them
    np.testing.assert_allclose(layer(jnp.asarray(x)), y, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("spec", TRANSPOSED, ids=spec_ids(TRANSPOSED))
def test_from_native_conv_transpose(spec: UpsampleSpec) -> None:
    """A 1-D or 3-D ``ConvTranspose`` (its kernel's rank tells the spec's) comes back as the same spec and weights,
    from linen with ``params`` and from NNX, with either ``transpose_kernel``."""
    w = weights(spec, seed=8)
    pads = [(k - 1 - begin, k - 1 - end) for (begin, end), k in zip(spec.crops, spec.kernel_size, strict=True)]
    flipped = w.kernel[(slice(None, None, -1),) * spec.spatial_dims]
    linen = nn.ConvTranspose(spec.out_channels, spec.kernel_size, spec.stride, padding=pads)
    got_spec, got = uf.from_native(linen, {"params": {"kernel": flipped, "bias": w.bias}})
    assert got_spec == spec and got.allclose(w, rtol=0)
    layer = nnx.ConvTranspose(
        spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, padding=pads, transpose_kernel=True,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    layer.kernel[...] = jnp.asarray(np.swapaxes(w.kernel, -1, -2))
    layer.bias[...] = jnp.asarray(w.bias)
    got_spec, got = uf.from_native(layer)
    assert got_spec == spec and got.allclose(w, rtol=0)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_from_native_conv_at_rank_3_and_1(order: str) -> None:
    """An NNX ``Conv`` read as a sub-pixel stage with either shuffle order and as a resize stage, at 3 and 1 axes:
    the converted layer computes what the Conv and the shuffle (written here by index) or the resize compute."""
    for kernel_size, scale, size in (((3, 1, 2), (2, 1, 2), (2, 3, 2)), ((3,), (3,), (4,))):
        conv = nnx.Conv(3, 2 * int(np.prod(scale)), kernel_size, padding="SAME", rngs=nnx.Rngs(1))
        x = np.random.default_rng(9).normal(size=(2, *size, 3)).astype(np.float32)
        z = np.asarray(conv(jnp.asarray(x)))
        if order == "DCR":  # channel flat(i) * C + c: regroup to CRD before the index shuffle
            z_crd = z.reshape(*z.shape[:-1], int(np.prod(scale)), 2).swapaxes(-1, -2).reshape(z.shape)
        else:
            z_crd = z
        spec, w = uf.from_native(conv, scale=scale, order=order)
        assert spec == SubpixelSpec(3, 2, scale, kernel_size)
        got = uf.build(spec, weights=w, api="nnx")(jnp.asarray(x))
        np.testing.assert_allclose(got, shuffled_by_index(z_crd, scale, 2), rtol=RTOL, atol=ATOL)
        spec, w = uf.from_native(conv, scale=scale, method="nearest")
        assert spec.spatial_dims == len(scale) and spec.out_channels == conv.out_features
        resized = np.asarray(uf.build(spec, weights=w, api="linen")(jnp.asarray(x)))
        repeated = jnp.asarray(x)
        for axis, factor in enumerate(scale, start=1):
            repeated = jnp.repeat(repeated, factor, axis=axis)
        np.testing.assert_allclose(resized, conv(repeated), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_unbatched_input_and_wrong_rank(api: str) -> None:
    for spec in (SPECS[2], SPECS[8]):
        w = weights(spec, seed=10)
        x, _ = inputs(spec, SIZES[spec.spatial_dims][1], batch=1, seed=11)
        layer = uf.build(spec, weights=w, api=api)
        np.testing.assert_allclose(layer(jnp.asarray(x[0])), layer(jnp.asarray(x))[0], rtol=1e-6, atol=1e-6)
        with pytest.raises(ValueError, match=r"x must be a rank-\d N\w+C .*got shape \(1, 2, 3, 4, 5, 3\)"):
            layer(jnp.zeros((1, 2, 3, 4, 5, 3)))


def test_dead_pixel_warning_at_rank_3() -> None:
    spec = UpsampleSpec(2, 2, kernel_size=(1, 2, 2), stride=2, spatial_dims=3)
    layer = uf.build(spec, api="nnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(jnp.zeros((1, 2, 2, 2, 2)))
    assert any("dead" in str(w.message) for w in caught), [str(w.message) for w in caught]


# --- heads ----------------------------------------------------------------------------------------

HEADS = {
    "1d-transposed-batch": upsample.plan(6, (16,), 3, "transposed", norm="batch", final_activation="tanh"),
    "1d-subpixel-layer": upsample.plan(6, 8, 3, "subpixel", norm="layer", input_size=(2,), spatial_dims=1),
    "3d-transposed-group": upsample.plan(4, (4, 4, 4), 2, "transposed", norm=Norm("group", groups=2)),
    "3d-resize-batch": upsample.plan(4, 4, 2, "resize", norm="batch", input_size=(1, 1, 1), spatial_dims=3),
}


def head_step(head: Any, api: str, x: np.ndarray, grad_y: np.ndarray) -> tuple[Any, Any, Any, upsample.HeadWeights]:
    """Training mode: ``(y, grad_x, canonical gradients, weights after the pass)`` for the loss ``sum(y * grad_y)``."""
    if api == "linen":
        module, variables = head.unbind()
        stats = {k: v for k, v in variables.items() if k != "params"}

        def linen_loss(p: Any, xs: Any) -> Any:
            y, updates = module.apply({"params": p, **stats}, xs, train=True, mutable=["batch_stats"])
            return jnp.sum(y * grad_y), (y, updates)

        (_, (y, updates)), (grads, grad_x) = jax.value_and_grad(linen_loss, (0, 1), has_aux=True)(
            variables["params"], jnp.asarray(x)
        )
        after = flax_head.get_weights((module, {**variables, **updates}))
        return y, grad_x, flax_head.get_weights((module, {**variables, "params": grads})), after

    head.train()

    def nnx_loss(model: Any, xs: Any) -> Any:
        y = model(xs)
        return jnp.sum(y * grad_y), y

    (_, y), (grads, grad_x) = nnx.value_and_grad(nnx_loss, argnums=(0, 1), has_aux=True)(head, jnp.asarray(x))
    holder = flax_head.build(head.spec, weights=flax_head.get_weights(head), api="nnx")
    nnx.update(holder, grads)
    return y, grad_x, flax_head.get_weights(holder), flax_head.get_weights(head)


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("name", list(HEADS))
def test_head_training_step_matches_reference(name: str, api: str) -> None:
    """Outputs, input and weight gradients in training mode, running statistics after the pass, and the
    inference-mode output with them, against ``upsample.head_reference``."""
    spec = HEADS[name]
    w = head_weights(spec, seed=12)
    (x, grad_y), *_ = batches(spec, count=1, seed=13)
    head = flax_head.build(spec, weights=w, api=api)
    y, grad_x, grads, after = head_step(head, api, x, grad_y)
    want_y, want_after = head_reference.forward(spec, w, x.astype(np.float64), training=True)
    want_grad_x, want_grads = head_reference.vjp(spec, w, x.astype(np.float64), grad_y, training=True)
    np.testing.assert_allclose(y, want_y, rtol=HEAD_RTOL, atol=ATOL, err_msg="output")
    np.testing.assert_allclose(grad_x, want_grad_x, rtol=HEAD_RTOL, atol=ATOL, err_msg="input gradient")
    assert_gradients_close(spec, grads, want_grads, x.shape[0])
    assert_weights_close(after, want_after, "after the training pass")
    inference = flax_head.build(spec, weights=after, api=api)
    if api == "nnx":
        inference.eval()
    want_eval, _ = head_reference.forward(spec, want_after, x.astype(np.float64))
    np.testing.assert_allclose(inference(jnp.asarray(x)), want_eval, rtol=HEAD_RTOL, atol=ATOL, err_msg="inference")


def test_head_from_native_rank_1_linen_and_rank_3_nnx() -> None:
    """A 1-D linen ``nn.Sequential`` (BatchNorm on axis 2, the channels of NLC) and a 3-D NNX one (GroupNorm) are
    read as heads of that rank whose reference output is the model's own."""
    x1 = np.random.default_rng(14).normal(size=(2, 3, 4)).astype(np.float32)
    model = nn.Sequential(
        [
            nn.ConvTranspose(3, (4,), (2,), padding="SAME"),
            nn.BatchNorm(True, axis=2),
            nn.relu,
            nn.ConvTranspose(2, (2,)),
        ]
    )
    variables = model.init(jax.random.key(0), jnp.asarray(x1))
    spec, w = uf.from_native(model, variables)
    assert spec.spatial_dims == 1 and spec.norm.kind == "batch"
    y, _ = head_reference.forward(spec, w, x1.astype(np.float64))
    np.testing.assert_allclose(model.apply(variables, jnp.asarray(x1)), y, rtol=RTOL, atol=ATOL)

    rngs = nnx.Rngs(1)
    layers = nnx.Sequential(
        nnx.ConvTranspose(4, 2, (2, 2, 2), (2, 2, 2), rngs=rngs),
        nnx.GroupNorm(2, num_groups=2, rngs=rngs),
        nnx.relu,
        nnx.ConvTranspose(2, 3, (1, 3, 1), padding="SAME", rngs=rngs),
    )
    x3 = np.random.default_rng(15).normal(size=(2, 2, 1, 2, 4)).astype(np.float32)
    spec, w = uf.from_native(layers)
    assert spec.spatial_dims == 3 and (spec.norm.kind, spec.norm.groups) == ("group", 2)
    y, _ = head_reference.forward(spec, w, x3.astype(np.float64))
    np.testing.assert_allclose(layers(jnp.asarray(x3)), y, rtol=RTOL, atol=ATOL)
