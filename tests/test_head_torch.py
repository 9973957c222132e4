"""PyTorch heads (issue 16) against the NumPy reference: forward and gradients in training and inference
mode, running statistics after SGD steps, the big planned heads, and the DCGAN generator via from_native."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
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
from torch import nn

import upsample
from upsample import head_reference
from upsample.backends.torch import head as torch_stack
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights


def canonical_grads(head: torch_stack.Head) -> HeadWeights:
    """The parameters' gradients in the canonical layout: copied into a clone's parameters, read back with
    ``get_weights`` (every layout conversion is a permutation, so it maps gradients as it maps weights)."""
    clone = copy.deepcopy(head)
    with torch.no_grad():
        for mine, theirs in zip(head.parameters(), clone.parameters(), strict=True):
            theirs.copy_(mine.grad)
    return torch_stack.get_weights(clone)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("spec", [spec for _, spec in CASES], ids=IDS)
def test_forward_and_gradients_match_reference(spec: HeadSpec, training: bool) -> None:
    weights = head_weights(spec)
    (x, grad_y), *_ = batches(spec, 1)
    head = spec.build("torch", weights=weights).train(training)
    x_t = torch.tensor(nchw(x), requires_grad=True)
    y = head(x_t)
    (y * torch.tensor(nchw(grad_y))).sum().backward()
    want_y, want_weights = head_reference.forward(spec, weights, x, training=training)
    want_grad_x, want_grads = head_reference.vjp(spec, weights, x, grad_y, training=training)
    np.testing.assert_allclose(nhwc(y.detach()), want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(nhwc(x_t.grad), want_grad_x, rtol=RTOL, atol=ATOL)
    assert_gradients_close(spec, canonical_grads(head), want_grads, len(x))
    assert_weights_close(torch_stack.get_weights(head), want_weights, "after the pass")


@pytest.mark.parametrize("spec", [spec for _, spec in SGD_CASES], ids=SGD_IDS)
def test_sgd_steps_match_reference(spec: HeadSpec) -> None:
    weights = head_weights(spec)
    data = batches(spec)
    head = spec.build("torch", weights=weights).train()
    optimizer = torch.optim.SGD(head.parameters(), lr=LEARNING_RATE)
    for x, grad_y in data:
        optimizer.zero_grad()
        (head(torch.tensor(nchw(x))) * torch.tensor(nchw(grad_y))).sum().backward()
        optimizer.step()
    assert_weights_close(torch_stack.get_weights(head), expected_steps(spec, weights, data))


@pytest.mark.parametrize("mode", MODES)
def test_planned_generator_heads_build(mode: str) -> None:
    spec = upsample.plan(512, 64, out_channels=3, mode=mode, norm="batch", activation="relu", final_activation="tanh")
    head = spec.build("torch").eval()
    with torch.no_grad():
        assert head(torch.zeros(2, 512, 1, 1)).shape == (2, 3, 64, 64)
    assert sum(p.numel() for p in head.parameters()) == spec.num_params


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dcgan_generator_converts(training: bool) -> None:
    generator = dcgan_generator().train(training)
    spec, weights = torch_stack.from_native(generator)
    assert (spec.norm, spec.activation, spec.final_activation) == (
        Norm("batch"),
        Activation("relu"),
        Activation("tanh"),
    )
    assert [s.in_channels for s in spec.stages] == [100, 512, 256, 128, 64]
    head = torch_stack.build(spec, weights=weights).train(training)
    x = torch.randn(4, 100, 1, 1, generator=torch.Generator().manual_seed(1))
    want = generator(x)
    got = head(x)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=RTOL, atol=ATOL)
    reference_y, reference_weights = head_reference.forward(spec, weights, nhwc(x), training=training)
    np.testing.assert_allclose(nhwc(got.detach()), reference_y, rtol=RTOL, atol=ATOL)
    assert_weights_close(torch_stack.from_native(generator)[1], reference_weights, "generator after the pass")
    assert_weights_close(torch_stack.get_weights(head), reference_weights, "head after the pass")


@pytest.mark.filterwarnings("ignore::upsample.UpsampleWarning")
def test_batch_norm_on_one_value_per_channel_is_refused() -> None:
    spec = HeadSpec([upsample.UpsampleSpec(4, 4), upsample.UpsampleSpec.for_size(4, 2)], norm="batch")
    head = spec.build("torch").train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        head(torch.ones(1, 4, 1, 1))
    assert head.eval()(torch.ones(1, 4, 1, 1)).shape == (1, 4, 2, 2)


def test_from_native_refuses_what_a_head_cannot_express() -> None:
    conv = nn.ConvTranspose2d(4, 4, 4, 2, 1)
    with pytest.raises(ValueError, match=r"sequential\[1\] \(Dropout\) has no place in a head"):
        torch_stack.from_native(nn.Sequential(conv, nn.Dropout()))
    with pytest.raises(ValueError, match="same norm and activation"):
        torch_stack.from_native(nn.Sequential(conv, nn.ReLU(), conv, nn.Tanh(), conv))
    with pytest.raises(ValueError, match="momentum"):
        torch_stack.from_native(nn.Sequential(conv, nn.BatchNorm2d(4, momentum=None), conv))
    with pytest.raises(ValueError, match=r"sequential\[0\] \(activation\) comes before any stage"):
        torch_stack.from_native(nn.Sequential(nn.ReLU(), conv))
    with pytest.raises(TypeError, match="must be a torch.nn.Sequential"):
        torch_stack.from_native(conv)  # type: ignore[arg-type]


def test_package_entry_points_take_heads() -> None:
    """``upsample.backends.torch.build/get_weights/set_weights`` dispatch a HeadSpec and its Head."""
    from upsample.backends import torch as package

    spec = SGD_CASES[0][1]
    weights = head_weights(spec)
    head = package.build(spec, weights=weights)
    assert isinstance(head, torch_stack.Head)
    assert_weights_close(package.get_weights(head), weights)
    package.set_weights(head, upsample.init_weights(spec, seed=1))
    assert_weights_close(package.get_weights(head), upsample.init_weights(spec, seed=1))
