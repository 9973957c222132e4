"""Shared cases for the head tests of every framework (issue 16): small heads, seeded weights and batches,
and what the NumPy reference expects (forward, gradients, and weights after SGD steps)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import upsample
from upsample import head_reference
from upsample.crosscheck import head_check_weights, head_data, head_gradient_atol
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights

RTOL, ATOL = 1e-4, 1e-5
RUNNING_VAR_RTOL = 1e-4
"""The running variance agrees to the same bound (batch statistics are float32 sums over at most 128 values
here); no looser bound was needed."""


def assert_gradients_close(spec: HeadSpec, got: HeadWeights, want: HeadWeights, batch: int) -> None:
    """Every trainable array's gradient, each to :func:`upsample.crosscheck.head_gradient_atol`."""
    got_flat = got.flat()
    for name, array in want.flat().items():
        atol = head_gradient_atol(spec, name, batch)
        np.testing.assert_allclose(got_flat[name], array, rtol=RTOL, atol=atol, err_msg=f"gradient of {name}")


STEPS, LEARNING_RATE = 3, 0.05
MODES = ["transposed", "subpixel", "resize"]


def heads(size: int) -> list[tuple[str, HeadSpec]]:
    """A plan from 1x1 to ``size`` in each mode with BatchNorm, a GroupNorm head with GELU, and a non-square
    sub-pixel head with every constant off its default."""
    group = Norm("group", groups=2, epsilon=1e-3)
    batch = Norm("batch", momentum=0.3, epsilon=1e-3)
    leaky, gelu_tanh = Activation("leaky_relu", slope=0.2), Activation("gelu", approximate=True)
    return [
        *((f"{m}-batch", upsample.plan(8, size, 3, m, norm="batch", final_activation="tanh")) for m in MODES),
        (
            "resize-group-gelu",
            upsample.plan(8, size, 3, "resize", norm=group, activation="gelu", final_activation="sigmoid"),
        ),
        (
            "subpixel-batch-leaky",
            upsample.plan(8, (size, 8), 2, "subpixel", norm=batch, activation=leaky, final_activation=gelu_tanh),
        ),
        *norm_heads(size),
        ("resize-any-factor", any_factor_head(size)),
        ("blurred", blurred_head(size)),
    ]


def blurred_head(size: int) -> HeadSpec:
    """A sub-pixel head whose first stage ends in fastai's blur and the others in MONAI's (each blur before its
    stage's norm and activation)."""
    first, *rest = upsample.plan(8, size, 3, "subpixel").stages
    blurred = (
        dataclasses.replace(first, blur="fastai"),
        *(dataclasses.replace(stage, blur="monai") for stage in rest),
    )
    return HeadSpec(blurred, norm=Norm("group", groups=2), activation="relu")


def any_factor_head(size: int) -> HeadSpec:
    """A segmentation decoder's end: a transposed stage to 3x3, a bare nearest resize by 2 (no convolution), then
    resizes by 1.5 (linear) and to a size that is no multiple of its input (cubic), as decoders resize to the image's
    size."""
    first = upsample.plan(8, 3, 6, "transposed").stages
    resizes = (
        upsample.ResizeSpec(6, scale=2, kernel_size=None),  # a resize alone: no weights, then a norm
        upsample.ResizeSpec(6, 4, scale=1.5, method="linear"),
        upsample.ResizeSpec(4, 3, size=(min(size, 7), 5), method="cubic", kernel_size=(3, 2)),
    )
    return HeadSpec((*first, *resizes), norm="batch", final_activation="tanh")


def norm_heads(size: int) -> list[tuple[str, HeadSpec]]:
    """The norms and activations diffusers and MONAI heads use: GroupNorm + SiLU (diffusers), instance norm
    with ELU (alpha off its default) ending in SiLU, channels-only layer norm with ELU."""
    instance, layer = Norm("instance", epsilon=1e-3), Norm("layer", epsilon=1e-6)
    elu = Activation("elu", alpha=0.7)
    return [
        (
            "subpixel-group-silu",
            upsample.plan(8, size, 3, "subpixel", norm=Norm("group", groups=2), activation="silu"),
        ),
        (
            "resize-instance-elu",
            upsample.plan(8, size, 3, "resize", norm=instance, activation=elu, final_activation="swish"),
        ),
        # 16 latent channels to 8x8 keeps 16 channels per pixel: a layer norm over 2 channels returns +-1
        # whatever the input, so float32 noise in the difference flips signs
        ("transposed-layer-elu", upsample.plan(16, min(size, 8), 3, "transposed", norm=layer, activation="elu")),
    ]


CASES = heads(32)
"""Forward and gradients: the issue's plans from 1x1 to 32x32."""
SGD_CASES = heads(8)
"""Three SGD steps: the same heads to 8x8. Larger heads make the loss ``sum(y * grad_y)`` so steep that three
steps at this rate amplify float32 rounding past the tolerance (tests/head_big_check.py runs the 64x64 heads
at a rate of 1e-3)."""
IDS = [name for name, _ in CASES]
SGD_IDS = [name for name, _ in SGD_CASES]
BATCH = 3


def head_weights(spec: HeadSpec, seed: int = 7) -> HeadWeights:
    """Seeded canonical weights with non-trivial norm parameters and running statistics (float32)."""
    return head_check_weights(spec, seed)


def batches(spec: HeadSpec, count: int = STEPS, seed: int = 11) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` seeded ``(x, grad_y)`` pairs, NHWC float32: the loss of a step is ``sum(y * grad_y)``."""
    return head_data(spec, batch=BATCH, steps=count, seed=seed)


def expected_steps(spec: HeadSpec, weights: HeadWeights, data: list[tuple[np.ndarray, np.ndarray]]) -> HeadWeights:
    """The reference's weights after one SGD step per batch of ``data``."""
    for x, grad_y in data:
        weights = head_reference.sgd_step(spec, weights, x, grad_y, LEARNING_RATE)
    return weights


def assert_weights_close(got: HeadWeights, want: HeadWeights, what: str = "") -> None:
    """Every array of ``want`` (flattened names) matches ``got``; the running variance to its own bound."""
    got_flat, want_flat = got.flat(), want.flat()
    assert set(got_flat) == set(want_flat), (sorted(got_flat), sorted(want_flat))
    for name, array in want_flat.items():
        rtol = RUNNING_VAR_RTOL if name.endswith("running_var") else RTOL
        np.testing.assert_allclose(got_flat[name], array, rtol=rtol, atol=ATOL, err_msg=f"{what} {name}")


def nchw(array: Any) -> np.ndarray:
    return np.asarray(array).transpose(0, 3, 1, 2)


def nhwc(array: Any) -> np.ndarray:
    return np.asarray(array).transpose(0, 2, 3, 1)


def dcgan_generator(nz: int = 100, ngf: int = 64, nc: int = 3) -> Any:
    """The PyTorch DCGAN example's generator (pytorch/examples, dcgan/main.py), seeded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    generator = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    with torch.no_grad():  # running statistics away from their defaults, so eval mode is tested
        for module in generator:
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return generator
