"""The Flax backend (linen ``Upsample`` and NNX ``UpsampleNNX``) against the NumPy reference (forward and
gradients) and against Flax's own ``ConvTranspose`` (both ``transpose_kernel`` values, string and explicit
padding); weight conversion, ``from_native``, jit/vmap, optax training, data-parallel sharding, dtypes,
input checks and the dead-pixel warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import assert_close, cases, random_input, random_weights, require_backend, sweep, sweep_ids
from hypothesis import given, settings

import upsample
from upsample import reference

try:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx, serialization

    from upsample.backends import flax as uf
except ImportError:  # the fixture below skips (locally) or fails (CI) with the install hint
    pass


@pytest.fixture(autouse=True, scope="module")
def _flax_installed() -> None:
    require_backend("flax")


def quiet(function: Any, *args: Any) -> Any:
    """``function(*args)`` without the dead-pixel warning (many sweep cases have dead pixels on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)
        return function(*args)


def canonical(spec: upsample.UpsampleSpec, params: dict) -> upsample.Weights:
    """A params-shaped tree (values or gradients) in the canonical layout; linen and NNX share the tree."""
    return uf.get_weights((uf.Upsample(spec), {"params": params}))


def grad_output(spec: upsample.UpsampleSpec, x: np.ndarray, seed: int) -> np.ndarray:
    shape = (x.shape[0], *spec.output_size(x.shape[1:3]), spec.out_channels)
    return np.random.default_rng(seed + 2).normal(size=shape).astype(np.float32)


def vjps(layers: list[tuple[Any, Any]], x: np.ndarray, gy: np.ndarray) -> list[tuple[Any, Any, Any]]:
    """``(y, grad_x, grad_params)`` of ``sum(apply(params, x) * gy)`` for each ``(apply, params)``, in one jit."""

    def run(all_params: list[Any], x: Any, gy: Any) -> list[tuple[Any, Any, Any]]:
        out = []
        for (apply, _), params in zip(layers, all_params, strict=True):
            y, pullback = jax.vjp(apply, params, x)
            grad_params, grad_x = pullback(gy)
            out.append((y, grad_x, grad_params))
        return out

    return quiet(jax.jit(run), [params for _, params in layers], x, gy)


def linen(spec: upsample.UpsampleSpec, weights: upsample.Weights, **kwargs: Any) -> tuple[Any, dict]:
    """``(apply, params)`` of a linen ``Upsample`` holding ``weights``."""
    module = uf.Upsample(spec, **kwargs)
    return (lambda p, x: module.apply({"params": p}, x)), uf.to_variables(spec, weights)["params"]


def nnx_layer(spec: upsample.UpsampleSpec, weights: upsample.Weights, **kwargs: Any) -> tuple[Any, nnx.State]:
    """``(apply, params)`` of an ``UpsampleNNX`` holding ``weights``, through ``nnx.split``/``nnx.merge``."""
    graphdef, params = nnx.split(uf.build(spec, weights=weights, api="nnx", **kwargs), nnx.Param)
    return (lambda p, x: nnx.merge(graphdef, p)(x)), params


def pure(tree: Any) -> Any:
    """NNX parameter gradients as the plain dict linen uses (the trees have the same names)."""
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def check_against_reference(
    spec: upsample.UpsampleSpec,
    weights: upsample.Weights,
    x: np.ndarray,
    gy: np.ndarray,
    y: Any,
    grad_x: Any,
    grad_params: dict,
) -> None:
    """Forward, input gradient and canonical parameter gradients against ``reference.forward``/``vjp``."""
    assert_close(y, reference.forward(spec, weights, x), "forward", spec)
    ref_grad_x, ref_grads = reference.vjp(spec, weights, x, gy)
    assert_close(grad_x, ref_grad_x, "grad x", spec)
    grads = canonical(spec, grad_params)
    for name, got, expected in zip(("kernel", "bias", "skip"), grads.arrays(), ref_grads.arrays(), strict=True):
        assert (got is None) == (expected is None), name
        if expected is not None:
            assert_close(got, expected, f"grad {name}", spec)


# --- against the reference ----------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "size"), sweep(), ids=sweep_ids())
def test_sweep_linen_forward_and_grads(spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    """Both paths (native ``ConvTranspose``; 1x1 matmul or phase split) against the reference."""
    weights = random_weights(spec, seed=7)
    x = random_input(spec, batch=2, size=size, seed=7)
    gy = grad_output(spec, x, seed=7)
    for result in vjps([linen(spec, weights, fast_path=fast) for fast in (False, True)], x, gy):
        check_against_reference(spec, weights, x, gy, *result)


def test_conv_transpose_pads_avoid_xla_bugs() -> None:
    """Every crop of the sweep reaches lax as pads in 0..k-1, never (0, 0) on an axis with k > 1: XLA:CPU
    miscomputes negative pads (openxla/xla#48713), and a pad above k - 1 gives a negative pad in the input
    gradient's convolution; zero pads on a k == s axis (or in a gradient) abort jaxlib 0.10's compiler."""
    for spec, _ in sweep():
        pads = nnx.eval_shape(lambda spec=spec: uf.UpsampleNNX(spec, rngs=nnx.Rngs(0))).conv.padding
        for (lo, hi), k in zip(pads, spec.kernel_size, strict=True):
            assert 0 <= lo <= k - 1 and 0 <= hi <= k - 1 and (k == 1 or (lo, hi) != (0, 0)), (spec, pads)


# Shapes that made jaxlib 0.10's XLA abort when ConvTranspose got pads (0, 0) on one axis: the forward conv
# (kernel 2 = stride 2 on the width) and the kernel gradient's conv (3 rows, kernel 4, stride 2).
XLA_ABORTS = [
    (upsample.UpsampleSpec(9, 9, (3, 2), (3, 2), padding=((1, 1), (2, 2)), residual="nearest"), (2, 6)),
    (upsample.UpsampleSpec(3, 3, (4, 3), (2, 1), padding=((3, 3), (1, 0))), (3, 1)),
]


@pytest.mark.parametrize(("spec", "size"), XLA_ABORTS, ids=["forward", "kernel-grad"])
def test_shapes_that_crashed_xla(spec: upsample.UpsampleSpec, size: tuple[int, int]) -> None:
    weights = random_weights(spec, seed=3)
    x = random_input(spec, batch=3, size=size, seed=3)
    gy = grad_output(spec, x, seed=3)
    for result in vjps([linen(spec, weights, fast_path=False), nnx_layer(spec, weights)], x, gy):
        check_against_reference(spec, weights, x, gy, *result[:2], pure(result[2]))


@settings(max_examples=50, deadline=None)
@given(cases())
def test_hypothesis_nnx_matches_reference_and_linen(case: tuple[upsample.UpsampleSpec, tuple, int, int]) -> None:
    spec, size, batch, seed = case
    weights = random_weights(spec, seed)
    x = random_input(spec, batch, size, seed)
    gy = grad_output(spec, x, seed)
    fast_path = seed % 2 == 0
    layers = [nnx_layer(spec, weights, fast_path=fast_path), linen(spec, weights, fast_path=fast_path)]
    ours, theirs = vjps(layers, x, gy)
    check_against_reference(spec, weights, x, gy, *ours[:2], pure(ours[2]))
    for got, want in zip(jax.tree_util.tree_leaves(theirs), jax.tree_util.tree_leaves(pure(ours)), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), "linen != NNX")


# --- against Flax's own ConvTranspose -----------------------------------------------------------

# Low pads stay in 0..k-1 (every kernel below has a 1-tap axis, hence 0): a negative low lax pad makes XLA:CPU read
# out of bounds in Flax's own layer (openxla/xla#48713), which our layers avoid by slicing instead.
NATIVE_PADDINGS = ["SAME", "VALID", ((0, 3), (0, 1)), ((0, -2), (0, 4)), 0]


@pytest.mark.parametrize("transpose_kernel", [False, True], ids=["plain", "transpose_kernel"])
@pytest.mark.parametrize("padding", NATIVE_PADDINGS, ids=str)
@pytest.mark.parametrize(("kernel", "stride"), [((3, 1), (2, 2)), ((1, 5), (3, 1)), ((4, 1), (1, 4))])
def test_native_conv_transpose(transpose_kernel: bool, padding: Any, kernel: tuple, stride: tuple) -> None:
    """from_native reads a Flax ConvTranspose as a spec and canonical weights that give its numbers: the
    reference, our linen and NNX layers and Flax's layer agree, forward and input/kernel gradients."""
    conv = nn.ConvTranspose(4, kernel, stride, padding=padding, transpose_kernel=transpose_kernel)
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype(np.float32)
    rng = np.random.default_rng(1)
    kernel_shape = (*kernel, 4, 3) if transpose_kernel else (*kernel, 3, 4)
    native = {"params": {"kernel": rng.normal(size=kernel_shape).astype(np.float32), "bias": rng.normal(size=4)}}
    native = jax.tree_util.tree_map(jnp.float32, native)
    spec, weights = uf.from_native(conv, native)
    gy = grad_output(spec, x, seed=0)
    flax_layer = (lambda p, x: conv.apply({"params": p}, x)), native["params"]
    (y, grad_x, grad_params), *ours = vjps([flax_layer, linen(spec, weights), nnx_layer(spec, weights)], x, gy)
    assert_close(y, reference.forward(spec, weights, x), "native forward", spec)
    ref_grad_x, ref_grads = reference.vjp(spec, weights, x, gy)
    assert_close(grad_x, ref_grad_x, "native grad x", spec)
    _, native_grads = uf.from_native(conv, grad_params)
    assert_close(native_grads.kernel, ref_grads.kernel, "native grad kernel", spec)
    for our_y, our_grad_x, our_grads in ours:
        assert_close(our_y, y, "ours against native", spec)
        assert_close(our_grad_x, grad_x, "ours against native, grad x", spec)
        our_kernel_grad = canonical(spec, pure(our_grads)).kernel
        assert_close(our_kernel_grad, native_grads.kernel, "ours against native, grad kernel", spec)


def nnx_conv(*args: Any, **kwargs: Any) -> nnx.ConvTranspose:
    """An ``nnx.ConvTranspose`` with random kernel and bias (set directly: Flax's initialisers compile slowly)."""
    conv = nnx.eval_shape(lambda: nnx.ConvTranspose(*args, rngs=nnx.Rngs(0), **kwargs))
    rng = np.random.default_rng(0)
    for param in (conv.kernel, conv.bias):
        param.set_value(jnp.asarray(rng.normal(size=param.shape), jnp.float32))
    return conv


def test_from_native_nnx_both_kernel_layouts() -> None:
    for transpose_kernel in (False, True):
        conv = nnx_conv(3, 5, (3, 2), (2, 2), padding=((2, 1), (0, 3)), transpose_kernel=transpose_kernel)
        spec, weights = uf.from_native(conv)
        assert spec == upsample.UpsampleSpec(3, 5, (3, 2), 2, padding=((0, 1), (1, -2)))
        x = np.random.default_rng(1).normal(size=(2, 4, 3, 3)).astype(np.float32)
        assert_close(conv(x), reference.forward(spec, weights, x), f"nnx transpose_kernel={transpose_kernel}", spec)


def test_from_native_bound_linen_and_round_trip() -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=(3, 4), stride=2, padding=((1, 0), (-1, 2)))
    weights = random_weights(spec, seed=3)
    variables = uf.to_variables(spec, weights)
    pads = tuple(upsample.geometry.crop_to_lax(spec.crops[a], spec.kernel_size[a]) for a in (0, 1))
    conv = nn.ConvTranspose(4, spec.kernel_size, spec.stride, padding=pads).bind(
        {"params": variables["params"]["conv"]}
    )
    got_spec, got_weights = uf.from_native(conv)
    assert got_spec == spec
    assert got_weights.allclose(weights, rtol=0)


@pytest.mark.parametrize(
    ("conv", "message"),
    [
        (lambda: nn.ConvTranspose(2, (3, 3), mask=jnp.ones((3, 3, 2, 2))), "mask=array of shape \\(3, 3, 2, 2\\)\\)"),
        (lambda: nn.ConvTranspose(2, (3, 3), padding="CIRCULAR"), "padding='CIRCULAR' is not supported"),
        (lambda: nn.ConvTranspose(2, (3, 3), padding="same"), "padding='same' is not supported"),  # Flax fails too
        (lambda: nn.ConvTranspose(2, (3, 1, 1, 1)), "only 1-D, 2-D and 3-D"),
    ],
    ids=["mask", "circular", "lowercase-same", "4d"],
)
def test_from_native_refuses(conv: Any, message: str) -> None:
    layer = conv()
    kernel_shape = (*layer.kernel_size, 2, 2)
    params = {"params": {"kernel": jnp.ones(kernel_shape), "bias": jnp.zeros(2)}}
    with pytest.raises(ValueError, match=message):
        uf.from_native(layer, params)


def test_from_native_needs_params_and_a_conv() -> None:
    with pytest.raises(ValueError, match="holds no weights: call from_native\\(conv, params\\)"):
        uf.from_native(nn.ConvTranspose(2, (3, 3)))
    with pytest.raises(TypeError, match="ConvTranspose"):
        uf.from_native(nn.Conv(2, (3, 3)))


# --- weights, build and the two APIs ------------------------------------------------------------

PROJECTION = upsample.UpsampleSpec(3, 5, kernel_size=(4, 3), stride=(2, 3), padding=1, residual="projection")


def test_parameter_tree_and_layout() -> None:
    """The documented names and shapes, and Flax's kernel is the canonical one flipped."""
    weights = random_weights(PROJECTION, seed=1)
    params = uf.to_variables(PROJECTION, weights)["params"]
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "conv": {"kernel": (4, 3, 3, 5), "bias": (5,)},
        "skip": {"kernel": (3, 5)},
    }
    np.testing.assert_array_equal(params["conv"]["kernel"], weights.kernel[::-1, ::-1])
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    initialised = jax.eval_shape(uf.Upsample(PROJECTION).init, jax.random.key(0), jnp.ones((1, 2, 2, 3)))
    assert jax.tree_util.tree_map(jnp.shape, initialised) == {"params": shapes}
    layer = nnx.eval_shape(lambda: uf.UpsampleNNX(PROJECTION, rngs=nnx.Rngs(0)))
    assert jax.tree_util.tree_map(jnp.shape, nnx.to_pure_dict(nnx.state(layer, nnx.Param))) == shapes


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_weights_round_trip(api: str) -> None:
    weights = random_weights(PROJECTION, seed=2)
    layer = uf.build(PROJECTION, weights=weights, api=api)
    assert uf.get_weights(layer).allclose(weights, rtol=0)
    other = random_weights(PROJECTION, seed=3)
    updated = uf.set_weights(layer, other)
    assert uf.get_weights(updated).allclose(other, rtol=0)
    x = random_input(PROJECTION, 2, (2, 3), seed=0)
    assert_close(updated(x), reference.forward(PROJECTION, other, x), "after set_weights", PROJECTION)
    if api == "nnx":
        assert updated is layer
    else:
        assert uf.get_weights(layer).allclose(weights, rtol=0)  # linen modules are immutable
        module, variables = updated.unbind()
        assert uf.get_weights((module, variables)).allclose(other, rtol=0)


def test_build_registry_and_defaults() -> None:
    linen, nnx_layer = PROJECTION.build("flax"), PROJECTION.build("nnx")
    assert isinstance(linen, uf.Upsample) and isinstance(nnx_layer, uf.UpsampleNNX)
    default = upsample.init_weights(PROJECTION, seed=0)
    assert uf.get_weights(linen).allclose(default, rtol=0) and uf.get_weights(nnx_layer).allclose(default, rtol=0)
    with pytest.raises(ValueError, match="api must be 'linen' or 'nnx', got 'haiku'"):
        uf.build(PROJECTION, api="haiku")
    with pytest.raises(ValueError, match="bound"):
        uf.get_weights(uf.Upsample(PROJECTION))
    with pytest.raises(ValueError, match="weights.kernel"):
        uf.build(PROJECTION, weights=upsample.init_weights(upsample.UpsampleSpec(3, 5, 2)))


def test_flax_serialization_round_trip() -> None:
    weights = random_weights(PROJECTION, seed=4)
    variables = uf.to_variables(PROJECTION, weights)
    template = uf.to_variables(PROJECTION, upsample.init_weights(PROJECTION, seed=5))
    restored = serialization.from_bytes(template, serialization.to_bytes(variables))
    assert uf.get_weights((uf.Upsample(PROJECTION), restored)).allclose(weights, rtol=0)


# --- transformations ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (3, 2)])
def test_jit_equals_eager_and_vmap(size: tuple[int, int]) -> None:
    weights = random_weights(PROJECTION, seed=5)
    variables = uf.to_variables(PROJECTION, weights)
    module = uf.Upsample(PROJECTION)
    x = random_input(PROJECTION, 2, size, seed=5)
    eager = module.apply(variables, x)
    assert_close(jax.jit(module.apply)(variables, x), eager, "linen jit", PROJECTION, rtol=1e-6, atol=1e-6)
    layer = uf.build(PROJECTION, weights=weights, api="nnx")
    assert_close(nnx.jit(lambda m, x: m(x))(layer, x), layer(x), "nnx jit", PROJECTION, rtol=1e-6, atol=1e-6)
    assert_close(layer(x), eager, "nnx against linen", PROJECTION, rtol=1e-6, atol=1e-6)
    stacked = np.stack([x, 2 * x])
    mapped = jax.vmap(module.apply, in_axes=(None, 0))(variables, stacked)
    assert_close(mapped[1], module.apply(variables, stacked[1]), "vmap", PROJECTION, rtol=1e-6, atol=1e-6)


def test_optax_training_lowers_the_loss_linen_and_nnx() -> None:
    spec = upsample.UpsampleSpec(4, 3, kernel_size=4, stride=2, padding=1, residual="projection")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 2, 4)).astype(np.float32)
    target = rng.normal(size=(8, 4, 4, 3)).astype(np.float32)
    module = uf.Upsample(spec)
    params = uf.to_variables(spec, upsample.init_weights(spec, seed=1))["params"]
    optimizer = optax.adam(1e-2)

    def loss(params: dict) -> Any:
        return jnp.mean((module.apply({"params": params}, x) - target) ** 2)

    @jax.jit
    def step(params: dict, state: Any) -> tuple[dict, Any, Any]:
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state = optimizer.init(params)
    losses = []
    for _ in range(20):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert losses[-1] < 0.8 * losses[0]

    layer = uf.build(spec, weights=upsample.init_weights(spec, seed=1), api="nnx")
    nnx_optimizer = nnx.Optimizer(layer, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def nnx_step(layer: uf.UpsampleNNX, nnx_optimizer: nnx.Optimizer) -> Any:
        value, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))(layer)
        nnx_optimizer.update(layer, grads)
        return value

    nnx_losses = [float(nnx_step(layer, nnx_optimizer)) for _ in range(20)]
    np.testing.assert_allclose(nnx_losses, losses, rtol=1e-4)  # same weights, same optimiser: same run


def test_data_parallel_sharding_matches_single_device() -> None:
    script = Path(__file__).with_name("flax_sharding_check.py")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sharded results match" in result.stdout


# --- dtypes, checks, warnings -------------------------------------------------------------------


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_bfloat16(api: str, fast_path: bool) -> None:
    spec = upsample.UpsampleSpec(4, 4, kernel_size=3, stride=2, padding="same", residual="nearest")
    weights = random_weights(spec, seed=6)
    layer = uf.build(spec, weights=weights, api=api, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, fast_path=fast_path)
    params = uf.to_variables(spec, weights, jnp.bfloat16)["params"]
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(params))
    x = random_input(spec, 2, (1, 1), seed=6)
    y = layer(jnp.asarray(x, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    rounded = upsample.Weights(
        *(None if a is None else np.asarray(jnp.asarray(a, jnp.bfloat16), np.float32) for a in weights.arrays())
    )
    expected = reference.forward(spec, rounded, np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32))
    assert_close(np.asarray(y, np.float32), expected, "bfloat16", spec, rtol=3e-2, atol=3e-2)
    mixed = uf.build(spec, weights=weights, api=api, fast_path=fast_path)(jnp.asarray(x, jnp.bfloat16))
    assert mixed.dtype == jnp.float32  # dtype=None promotes as Flax layers do


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_input_checks(api: str) -> None:
    spec = upsample.UpsampleSpec(3, 4, kernel_size=2)
    layer = uf.build(spec, api=api)
    with pytest.raises(ValueError, match="rank-4 NHWC"):
        layer(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="is this NCHW"):
        layer(jnp.ones((2, 3, 1, 1)))
    with pytest.raises(TypeError, match="floating dtype, got int32"):
        layer(jnp.ones((2, 1, 1, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"rank-4 NHWC \(or rank-3 HWC, unbatched\)"):
        jax.jit(layer.__call__)(jnp.ones((1, 1, 1, 1, 3)))


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("fast_path", [True, False])
def test_unbatched_empty_batch_and_infinite_bias(api: str, fast_path: bool) -> None:
    """Issue 13: an unbatched ``(H, W, C)`` input as Flax layers take it; a batch of 0 (the 1x1 fast path
    divided by it); a ``+inf`` bias stays ``+inf`` on rows that negative crops add (``0 * inf`` was NaN)."""
    spec = upsample.UpsampleSpec(3, 4, kernel_size=2, stride=2, padding=((-1, 0), (1, -2)))
    weights = random_weights(spec, 31)
    layer = uf.build(spec, weights=weights, api=api, fast_path=fast_path)
    for size in [(1, 1), (2, 3)]:
        x = random_input(spec, 1, size, 31)
        assert_close(
            np.asarray(quiet(layer, jnp.asarray(x[0])))[None], reference.forward(spec, weights, x), "unbatched", spec
        )
        empty = quiet(layer, jnp.zeros((0, *size, 3)))
        assert empty.shape == (0, *spec.output_size(size), 4)
    infinite = upsample.Weights(weights.kernel, np.array([np.inf, -np.inf, 1, 2], np.float32))
    layer = uf.build(spec, weights=infinite, api=api, fast_path=fast_path)
    for size in [(1, 1), (2, 3)]:
        x = random_input(spec, 2, size, 32)
        y = np.asarray(quiet(layer, jnp.asarray(x)))
        expected = reference.forward(spec, infinite, x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(y[..., :2], expected[..., :2])  # +-inf channels exactly


def test_linen_interceptors_see_the_conv_on_1x1() -> None:
    """Issue 14: method interceptors (``nn.intercept_methods``) see the conv called, so the fast path steps
    aside while one is active, as it does for hooks in torch."""
    spec = upsample.UpsampleSpec(3, 4, kernel_size=2)
    layer = uf.build(spec, weights=random_weights(spec, 33))
    seen = []

    def interceptor(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        seen.append(type(context.module).__name__)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        layer(jnp.ones((2, 1, 1, 3)))
    assert "ConvTranspose" in seen


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_warning_points_at_the_callers_line(api: str) -> None:
    spec = upsample.UpsampleSpec(20 if api == "linen" else 21, 2, kernel_size=2, stride=4, padding="same")
    with pytest.warns(upsample.UpsampleWarning, match="dead") as record:
        uf.build(spec, api=api)(jnp.ones((1, 1, 1, spec.in_channels)))
    assert record[0].filename == __file__


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_dead_pixel_warning_once_per_input_size(api: str) -> None:
    # 1x1 -> 4x4 with a 2x2 kernel: 12 dead pixels. The guard is per spec, so each api gets its own spec,
    # with more channels than cases() draws (17) so no other test has warned for it already.
    spec = upsample.UpsampleSpec(18 if api == "linen" else 19, 2, kernel_size=2, stride=4, padding="same")
    layer = uf.build(spec, api=api)
    with pytest.warns(upsample.UpsampleWarning, match="12 of 16 output pixels are dead"):
        layer(jnp.ones((1, 1, 1, spec.in_channels)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", upsample.UpsampleWarning)
        layer(jnp.ones((3, 1, 1, spec.in_channels)))  # same input size: warned already
        jax.jit(layer.__call__)(jnp.ones((1, 1, 1, spec.in_channels)))
    full = upsample.UpsampleSpec(18, 2, kernel_size=4, stride=4, padding="same")
    with warnings.catch_warnings():
        warnings.simplefilter("error", upsample.UpsampleWarning)
        uf.build(full, api=api)(jnp.ones((1, 1, 1, 18)))


@pytest.mark.parametrize("api", ["flax", "nnx"])
def test_build_without_weights_is_the_canonical_init(api: str) -> None:
    """Issue 14: one rule in every backend: ``spec.build(backend)`` holds ``init_weights(spec, seed=0)``."""
    spec = upsample.UpsampleSpec(3, 4, kernel_size=3, stride=2, residual="projection")
    assert uf.get_weights(spec.build(api)).allclose(upsample.init_weights(spec, seed=0))
