"""Flax heads (issue 16), linen and NNX, against the NumPy reference: forward and gradients in training and
inference mode, running statistics after SGD steps, the big planned heads, and the PyTorch DCGAN generator
converted with the torch ``from_native``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from stack_cases import (
    ATOL,
    CASES,
    IDS,
    LEARNING_RATE,
    MODES,
    RTOL,
    SGD_CASES,
    SGD_IDS,
    assert_gradients_close,
    assert_weights_close,
    batches,
    dcgan_generator,
    expected_steps,
    head_weights,
    nchw,
    nhwc,
)

import upsample
from upsample import stack_reference
from upsample.backends.flax import stack as flax_stack
from upsample.stack import Activation, Norm, StackSpec
from upsample.stack_weights import StackWeights

APIS = ["linen", "nnx"]


def stepper(api: str, training: bool) -> Callable[[Any, np.ndarray, np.ndarray], tuple[Any, ...]]:
    """``step(head, x, grad_y) -> (y, grad_x, canonical gradients, head with updated statistics)`` for the
    loss ``sum(y * grad_y)``, compiled once per stepper (far cheaper than JAX's op-by-op eager dispatch)."""
    if api == "linen":

        @functools.partial(jax.jit, static_argnums=0)
        def linen_step(module: Any, params: Any, stats: Any, xs: Any, grad_y: Any) -> Any:
            def loss(p: Any, x: Any) -> tuple[Any, Any]:
                y, updates = module.apply({"params": p, **stats}, x, train=training, mutable=["batch_stats"])
                return jnp.sum(y * grad_y), (y, updates)

            return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs)

        def run_linen(head: Any, x: np.ndarray, grad_y: np.ndarray) -> tuple[Any, ...]:
            module, variables = head.unbind()
            stats = {key: value for key, value in variables.items() if key != "params"}
            (_, (y, updates)), (grads, grad_x) = linen_step(module, variables["params"], stats, x, grad_y)
            canonical = flax_stack.get_weights((module, {**variables, "params": grads}))
            return y, grad_x, canonical, module.bind({**variables, **updates})

        return run_linen

    @nnx.jit
    def nnx_step(model: Any, xs: Any, grad_y: Any) -> Any:
        def loss(m: Any, x: Any) -> tuple[Any, Any]:
            y = m(x)
            return jnp.sum(y * grad_y), y

        return nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(model, xs)

    def run_nnx(head: Any, x: np.ndarray, grad_y: np.ndarray) -> tuple[Any, ...]:
        head.train() if training else head.eval()
        (_, y), (grads, grad_x) = nnx_step(head, x, grad_y)
        holder = flax_stack.build(head.spec, weights=flax_stack.get_weights(head), api="nnx")
        nnx.update(holder, grads)
        return y, grad_x, flax_stack.get_weights(holder), head

    return run_nnx


def forward(api: str, head: Any, x: np.ndarray, training: bool) -> tuple[Any, Any]:
    """``(y, head with updated statistics)``, compiled, without gradients."""
    if api == "linen":
        module, variables = head.unbind()
        apply = jax.jit(functools.partial(module.apply, train=training, mutable=["batch_stats"]))
        y, updates = apply(variables, jnp.asarray(x))
        return y, module.bind({**variables, **updates})
    head.train() if training else head.eval()
    return nnx.jit(lambda model, xs: model(xs))(head, jnp.asarray(x)), head


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("spec", [spec for _, spec in CASES], ids=IDS)
def test_forward_and_gradients_match_reference(spec: StackSpec, training: bool, api: str) -> None:
    weights = head_weights(spec)
    (x, grad_y), *_ = batches(spec, 1)
    y, grad_x, grads, after = stepper(api, training)(
        spec.build("flax" if api == "linen" else "nnx", weights=weights), x, grad_y
    )
    want_y, want_weights = stack_reference.forward(spec, weights, x, training=training)
    want_grad_x, want_grads = stack_reference.vjp(spec, weights, x, grad_y, training=training)
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad_x, want_grad_x, rtol=RTOL, atol=ATOL)
    assert_gradients_close(spec, grads, want_grads, len(x))
    assert_weights_close(flax_stack.get_weights(after), want_weights, "after the pass")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("spec", [spec for _, spec in SGD_CASES], ids=SGD_IDS)
def test_sgd_steps_match_reference(spec: StackSpec, api: str) -> None:
    weights = head_weights(spec)
    data = batches(spec)
    head = spec.build("flax" if api == "linen" else "nnx", weights=weights)
    step = stepper(api, True)
    for x, grad_y in data:
        _, _, grads, head = step(head, x, grad_y)
        current = flax_stack.get_weights(head)
        moved = {
            name: array - LEARNING_RATE * grads.flat()[name] if "running" not in name else array
            for name, array in current.flat().items()
        }
        head = flax_stack.set_weights(head, StackWeights.from_flat(spec, moved))
    assert_weights_close(flax_stack.get_weights(head), expected_steps(spec, weights, data))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", MODES)
def test_planned_generator_heads_build(mode: str, api: str) -> None:
    spec = upsample.plan(512, 64, out_channels=3, mode=mode, norm="batch", activation="relu", final_activation="tanh")
    head = spec.build("flax" if api == "linen" else "nnx")
    assert jax.eval_shape(head, jax.ShapeDtypeStruct((2, 1, 1, 512), jnp.float32)).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dcgan_generator_reproduced(training: bool, api: str) -> None:
    import torch

    from upsample.backends.torch import stack as torch_stack

    generator = dcgan_generator().train(training)
    spec, weights = torch_stack.from_native(generator)
    x = np.random.default_rng(1).normal(size=(4, 1, 1, 100)).astype(np.float32)
    want = nhwc(generator(torch.tensor(nchw(x))).detach())
    y, after = forward(api, spec.build("flax" if api == "linen" else "nnx", weights=weights), x, training)
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
    assert_weights_close(flax_stack.get_weights(after), torch_stack.from_native(generator)[1], "running statistics")


@pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")
@pytest.mark.parametrize("api", APIS)
def test_batch_norm_on_one_value_per_channel_is_refused(api: str) -> None:
    spec = StackSpec([upsample.UpsampleSpec(4, 4, 3, padding=1), upsample.UpsampleSpec.for_size(4, 2)], norm="batch")
    head = spec.build("flax" if api == "linen" else "nnx")
    x = np.ones((1, 1, 1, 4), np.float32)
    with pytest.raises(ValueError, match="more than one value per channel"):
        stepper(api, True)(head, x, np.ones((1, 2, 2, 4), np.float32))
    assert stepper(api, False)(head, x, np.ones((1, 2, 2, 4), np.float32))[0].shape == (1, 2, 2, 4)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_from_native_nnx_sequential(training: bool) -> None:
    """A DCGAN-style NNX generator converts; the linen, NNX and torch heads reproduce its outputs."""
    import torch

    rngs = nnx.Rngs(0)
    model = nnx.Sequential(
        nnx.ConvTranspose(16, 16, (4, 4), padding="VALID", use_bias=False, rngs=rngs),
        nnx.BatchNorm(16, momentum=0.9, epsilon=1e-3, rngs=rngs),
        nnx.relu,
        nnx.ConvTranspose(16, 8, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs),
        nnx.BatchNorm(8, momentum=0.9, epsilon=1e-3, rngs=rngs),
        nnx.relu,
        nnx.ConvTranspose(8, 3, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs),
        functools.partial(jax.nn.gelu, approximate=False),
    )
    rng = np.random.default_rng(2)
    for norm in (model.layers[1], model.layers[4]):
        norm.mean[...] = jnp.asarray(rng.normal(0, 0.1, norm.mean.shape), jnp.float32)
        norm.var[...] = jnp.asarray(rng.uniform(0.5, 2, norm.var.shape), jnp.float32)
    spec, weights = flax_stack.from_native(model)
    assert spec.norm == Norm("batch", epsilon=1e-3, momentum=1 - 0.9)
    assert spec.final_activation == Activation("gelu", approximate=False)
    assert spec.output_size() == (16, 16)
    x = np.random.default_rng(1).normal(size=(4, 1, 1, 16)).astype(np.float32)
    for norm in (model.layers[1], model.layers[4]):
        norm.use_running_average = not training
    want = np.asarray(model(jnp.asarray(x)))
    for api in APIS:
        y, _ = forward(api, spec.build("flax" if api == "linen" else "nnx", weights=weights), x, training)
        np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL, err_msg=api)
    torch_head = spec.build("torch", weights=weights).train(training)
    np.testing.assert_allclose(nhwc(torch_head(torch.tensor(nchw(x))).detach()), want, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"layers\[1\] \(Dropout\) has no place in a head"):
        flax_stack.from_native([model.layers[0], nnx.Dropout(0.5, rngs=rngs)])


@pytest.mark.parametrize("api", APIS)
def test_package_entry_points_take_heads(api: str) -> None:
    """``upsample.backends.flax.build/get_weights/set_weights`` dispatch a StackSpec and its heads."""
    from upsample.backends import flax as package

    spec = SGD_CASES[0][1]
    weights = head_weights(spec)
    head = package.build(spec, weights=weights, api=api)
    assert isinstance(head, flax_stack.Head if api == "linen" else flax_stack.HeadNNX)
    assert_weights_close(package.get_weights(head), weights)
    head = package.set_weights(head, upsample.init_weights(spec, seed=1))
    assert_weights_close(package.get_weights(head), upsample.init_weights(spec, seed=1))
