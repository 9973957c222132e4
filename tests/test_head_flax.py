"""Flax heads (issue 16), linen and NNX, against the NumPy reference: forward and gradients in training and
inference mode, running statistics after SGD steps, the big planned heads, the PyTorch DCGAN generator
converted with the torch ``from_native``, and NNX and linen sequences converted with the Flax ``from_native``."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx
from head_cases import (
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
from upsample import head_reference
from upsample.backends.flax import head as flax_stack
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights
from upsample.runners.flax import head_stepper as stepper

APIS = ["linen", "nnx"]


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
def test_forward_and_gradients_match_reference(spec: HeadSpec, training: bool, api: str) -> None:
    weights = head_weights(spec)
    (x, grad_y), *_ = batches(spec, 1)
    y, grad_x, grads, after = stepper(api, training)(
        spec.build("flax" if api == "linen" else "nnx", weights=weights), x, grad_y
    )
    want_y, want_weights = head_reference.forward(spec, weights, x, training=training)
    want_grad_x, want_grads = head_reference.vjp(spec, weights, x, grad_y, training=training)
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad_x, want_grad_x, rtol=RTOL, atol=ATOL)
    assert_gradients_close(spec, grads, want_grads, len(x))
    assert_weights_close(flax_stack.get_weights(after), want_weights, "after the pass")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("spec", [spec for _, spec in SGD_CASES], ids=SGD_IDS)
def test_sgd_steps_match_reference(spec: HeadSpec, api: str) -> None:
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
        head = flax_stack.set_weights(head, HeadWeights.from_flat(spec, moved))
    assert_weights_close(flax_stack.get_weights(head), expected_steps(spec, weights, data))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", MODES)
def test_planned_generator_heads_build(mode: str, api: str) -> None:
    spec = upsample.plan(512, 64, out_channels=3, mode=mode, norm="batch", activation="relu", final_activation="tanh")
    head = spec.build("flax" if api == "linen" else "nnx")
    if api == "nnx":
        head.eval()  # an NNX head starts in training mode, as nnx.BatchNorm does: batch statistics mutate state
    assert jax.eval_shape(head, jax.ShapeDtypeStruct((2, 1, 1, 512), jnp.float32)).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dcgan_generator_reproduced(training: bool, api: str) -> None:
    import torch

    from upsample.backends.torch import head as torch_stack

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
    spec = HeadSpec([upsample.UpsampleSpec(4, 4, 3, padding=1), upsample.UpsampleSpec.for_size(4, 2)], norm="batch")
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


def linen_generator(norm: str, training: bool) -> tuple[linen.Sequential, dict[str, Any]]:
    """A DCGAN-shaped linen generator (1x1x8 -> 16x16x3) with ``norm`` ("batch" or "group") between stages, and
    its variables with every norm parameter and running statistic away from its default (seeded)."""
    make_norm = {
        "batch": lambda: linen.BatchNorm(use_running_average=not training, momentum=0.8, epsilon=1e-3),
        "group": lambda: linen.GroupNorm(num_groups=None, group_size=4, epsilon=1e-4),  # 4 groups of 16
    }[norm]
    leaky = functools.partial(linen.leaky_relu, negative_slope=0.2)
    model = linen.Sequential(
        [
            linen.ConvTranspose(16, (4, 4), padding="VALID", use_bias=False),
            make_norm(),
            leaky,
            linen.ConvTranspose(16, (4, 4), strides=(2, 2), padding="SAME"),
            make_norm(),
            leaky,
            linen.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME", transpose_kernel=True),
            jnp.tanh,
        ]
    )
    initial = model.init(jax.random.key(0), jnp.zeros((1, 1, 1, 8)))
    rng = np.random.default_rng(3)
    perturb = lambda a: jnp.asarray(a + rng.normal(0, 0.2, a.shape), jnp.float32)  # noqa: E731
    variables: dict[str, Any] = {"params": jax.tree.map(perturb, initial["params"])}
    if "batch_stats" in initial:
        variables["batch_stats"] = {
            name: {"mean": perturb(stats["mean"]), "var": jnp.asarray(rng.uniform(0.5, 2, stats["var"].shape))}
            for name, stats in initial["batch_stats"].items()
        }
    return model, variables


@pytest.mark.parametrize(
    ("norm", "training"),
    [("batch", True), ("batch", False), ("group", True)],
    ids=["batch-train", "batch-eval", "group"],
)
def test_from_native_linen_sequential(norm: str, training: bool) -> None:
    """A DCGAN-shaped linen generator converts with its variables; the linen and NNX heads reproduce its outputs
    and, in training, its running mean (the momentum conversion)."""
    model, variables = linen_generator(norm, training)
    spec, weights = flax_stack.from_native(model, variables)
    want_norm = Norm("batch", epsilon=1e-3, momentum=1 - 0.8) if norm == "batch" else Norm("group", 1e-4, groups=4)
    assert (spec.norm, spec.activation, spec.final_activation) == (
        want_norm,
        Activation("leaky_relu", 0.2),
        Activation("tanh"),
    )
    assert spec.output_size() == (16, 16)
    assert_weights_close(flax_stack.from_native(model.bind(variables))[1], weights, "bound model")
    x = np.random.default_rng(1).normal(size=(4, 1, 1, 8)).astype(np.float32)
    want, updates = model.apply(variables, jnp.asarray(x), mutable=["batch_stats"])
    for api in APIS:
        y, after = forward(api, spec.build("flax" if api == "linen" else "nnx", weights=weights), x, training)
        np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL, err_msg=api)
        if norm == "batch" and training:
            for i, name in ((0, "layers_1"), (1, "layers_4")):
                got_mean = flax_stack.get_weights(after).norms[i].running_mean
                np.testing.assert_allclose(got_mean, updates["batch_stats"][name]["mean"], rtol=RTOL, atol=ATOL)


def test_from_native_linen_refusals() -> None:
    """What a head cannot express, and missing or misplaced variables, are refused naming the layer or argument."""
    model, variables = linen_generator("batch", False)
    conv = linen.ConvTranspose(4, (2, 2))
    with pytest.raises(
        ValueError, match=r"unbound linen Sequential holds no weights: call from_native\(model, variables\)"
    ):
        flax_stack.from_native(model)
    with pytest.raises(ValueError, match=r"variables\['params'\] has no entry 'layers_0' for layers\[0\]"):
        flax_stack.from_native(model, {"params": {}})
    with pytest.raises(TypeError, match="variables must be a dict with a 'params' collection"):
        flax_stack.from_native(model, {"batch_stats": {}})
    with pytest.raises(TypeError, match=r"model must be a flax.linen.Sequential .* got ConvTranspose"):
        flax_stack.from_native(conv, variables)
    with pytest.raises(TypeError, match="variables is only for a linen nn.Sequential"):
        flax_stack.from_native([nnx.ConvTranspose(4, 4, (2, 2), rngs=nnx.Rngs(0))], variables)
    x = jnp.zeros((1, 1, 1, 4))
    for layer, message in [
        (
            linen.Dropout(0.5, deterministic=True),
            r"layers\[1\] \(Dropout\) has no place in a head: expected nn.ConvTranspose",
        ),
        (linen.BatchNorm(use_running_average=True, axis=1), r"layers\[1\] \(BatchNorm\) must normalise the last axis"),
        (linen.GroupNorm(num_groups=2, use_scale=False), r"layers\[1\] \(GroupNorm\) must have use_scale=True"),
    ]:
        sequence = linen.Sequential([linen.ConvTranspose(4, (2, 2)), layer, linen.ConvTranspose(4, (2, 2))])
        with pytest.raises(ValueError, match=message):
            flax_stack.from_native(sequence, sequence.init(jax.random.key(0), x))


@pytest.mark.parametrize("api", APIS)
def test_package_entry_points_take_heads(api: str) -> None:
    """``upsample.backends.flax.build/get_weights/set_weights`` dispatch a HeadSpec and its heads."""
    from upsample.backends import flax as package

    spec = SGD_CASES[0][1]
    weights = head_weights(spec)
    head = package.build(spec, weights=weights, api=api)
    assert isinstance(head, flax_stack.Head if api == "linen" else flax_stack.HeadNNX)
    assert_weights_close(package.get_weights(head), weights)
    head = package.set_weights(head, upsample.init_weights(spec, seed=1))
    assert_weights_close(package.get_weights(head), upsample.init_weights(spec, seed=1))
