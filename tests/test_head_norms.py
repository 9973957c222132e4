"""The norms and activations diffusers and MONAI heads use (instance and channels-only layer norm, SiLU/swish,
ELU): their validation and JSON, and heads read from native torch and Flax code using them, checked against
the native model's own outputs in train and eval mode with the converted head built in torch, linen and NNX.
Forward, gradients, SGD steps and ONNX export run in the head tests through tests/head_cases.py."""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import pytest
from cases import require_backend
from test_head_from_native import assert_every_build_matches, latents, nchw, nhwc

import upsample
from upsample import head_reference
from upsample.head import Activation, HeadSpec, Norm

TRAINING = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


# --- validation and JSON ------------------------------------------------------------------------


def test_swish_is_silu_and_elu_keeps_its_alpha() -> None:
    assert Activation("swish") == Activation("silu")
    spec = upsample.plan(8, 8, 3, "transposed", norm="instance", activation={"kind": "elu", "alpha": 0.5})
    assert spec.activation == Activation("elu", alpha=0.5)
    assert HeadSpec.from_json(spec.to_json()) == spec
    assert "alpha" not in Activation("relu").to_dict()  # other activations' JSON as before


@pytest.mark.parametrize("kind", ["instance", "layer"])
def test_per_sample_norms_round_trip_without_running_statistics(kind: str) -> None:
    spec = upsample.plan(8, 8, 3, "subpixel", norm=Norm(kind, epsilon=1e-6), activation="silu")
    assert HeadSpec.from_json(spec.to_json()) == spec
    shapes = spec.weight_shapes()
    assert shapes["norms.0.scale"] == (8,) and shapes["norms.0.running_mean"] is shapes["norms.0.running_var"] is None


def test_bad_alpha_and_kinds_are_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"activation alpha must be > 0.0, got -1"):
        Activation("elu", alpha=-1)
    with pytest.raises(TypeError, match=r"activation alpha must be a number, got 'big'"):
        Activation("elu", alpha="big")
    with pytest.raises(ValueError, match=r"activation must be one of .*'silu', 'elu'.*got 'mish'"):
        Activation("mish")
    with pytest.raises(ValueError, match=r"norm kind must be one of .*'instance', 'layer'.*got 'rms'"):
        Norm("rms")


def test_reference_activations_match_their_definitions() -> None:
    """SiLU and ELU against torch's own functions, and their derivatives against central differences."""
    torch = pytest.importorskip("torch")
    z = np.linspace(-4, 4, 80)  # not 0, where ELU with alpha != 1 has a kink
    for activation, native in [
        (Activation("silu"), torch.nn.functional.silu),
        (Activation("elu", alpha=0.7), functools.partial(torch.nn.functional.elu, alpha=0.7)),
    ]:
        np.testing.assert_allclose(head_reference.activate(activation, z), native(torch.tensor(z)).numpy(), 1e-12)
        step = 1e-6
        numeric = (head_reference.activate(activation, z + step) - head_reference.activate(activation, z - step)) / (
            2 * step
        )
        np.testing.assert_allclose(head_reference.activate_derivative(activation, z), numeric, atol=1e-7)


# --- heads from native torch code ---------------------------------------------------------------


def torch_model(norm: str) -> Any:
    """Three transposed stages with the native norm and activation each library builds: diffusers' GroupNorm +
    SiLU, MONAI's InstanceNorm2d(affine=True) + ELU, torch's default InstanceNorm2d (affine=False)."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    make_norm, activation = {
        "group-silu": (lambda c: nn.GroupNorm(2, c, eps=1e-6), nn.SiLU),
        "instance-elu": (lambda c: nn.InstanceNorm2d(c, eps=1e-3, affine=True), lambda: nn.ELU(alpha=0.6)),
        "instance-plain": (lambda c: nn.InstanceNorm2d(c), nn.SiLU),
    }[norm]
    model = nn.Sequential(
        nn.ConvTranspose2d(8, 6, 4, 2, 1),
        make_norm(6),
        activation(),
        nn.ConvTranspose2d(6, 4, 4, 2, 1),
        make_norm(4),
        activation(),
        nn.ConvTranspose2d(4, 3, 4, 2, 1),
        nn.SiLU(),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.GroupNorm, nn.InstanceNorm2d)) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


@TRAINING
@pytest.mark.parametrize("norm", ["group-silu", "instance-elu", "instance-plain"])
def test_torch_head_with_diffusers_and_monai_norms_reproduced(norm: str, training: bool) -> None:
    require_backend("torch")
    import torch

    from upsample.backends.torch import head as torch_stack

    model = torch_model(norm).train(training)
    spec, weights = torch_stack.from_native(model)
    assert spec.norm is not None and spec.norm.kind == norm.split("-")[0]
    assert spec.activation == {"group-silu": Activation("silu"), "instance-plain": Activation("silu")}.get(
        norm, Activation("elu", alpha=0.6)
    )
    x = latents(8)
    with torch.no_grad():
        want = nhwc(copy.deepcopy(model)(torch.tensor(nchw(x))))
    np.testing.assert_allclose(want, head_reference.forward(spec, weights, x, training=training)[0], 1e-4, 1e-5)
    assert_every_build_matches(spec, weights, x, want, training)


def test_torch_instance_norm_with_running_statistics_is_refused() -> None:
    require_backend("torch")
    from torch import nn

    from upsample.backends.torch import head as torch_stack

    model = nn.Sequential(
        nn.ConvTranspose2d(8, 6, 4, 2, 1), nn.InstanceNorm2d(6, track_running_stats=True), nn.SiLU(),
        nn.ConvTranspose2d(6, 3, 4, 2, 1),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"sequential\[1\] \(InstanceNorm2d\) must have track_running_stats=False"):
        torch_stack.from_native(model)


# --- heads from native Flax code ----------------------------------------------------------------


@TRAINING
@pytest.mark.parametrize("norm", ["layer", "instance"])
def test_nnx_head_with_layer_and_instance_norm_reproduced(norm: str, training: bool) -> None:
    require_backend("flax")
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf

    rngs = nnx.Rngs(2)
    make_norm = {"layer": nnx.LayerNorm, "instance": nnx.InstanceNorm}[norm]
    elu = functools.partial(jax.nn.elu, alpha=0.4)
    model = nnx.Sequential(
        nnx.ConvTranspose(8, 6, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs),
        make_norm(6, epsilon=1e-5, rngs=rngs),
        elu,
        nnx.ConvTranspose(6, 3, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs),
        jax.nn.swish,
    )
    keys = iter(jax.random.split(jax.random.key(1), 2))
    model.layers[1].scale[...] = jax.random.uniform(next(keys), (6,), minval=0.5, maxval=1.5)
    model.layers[1].bias[...] = jax.random.uniform(next(keys), (6,), minval=-0.5, maxval=0.5)
    spec, weights = uf.from_native(model)
    assert spec.norm == Norm(norm, epsilon=1e-5)
    assert spec.activation == Activation("elu", alpha=0.4) and spec.final_activation == Activation("silu")
    x = latents(8)
    want = np.asarray(model(jnp.asarray(x)))
    np.testing.assert_allclose(want, head_reference.forward(spec, weights, x, training=training)[0], 1e-4, 1e-5)
    assert_every_build_matches(spec, weights, x, want, training)
