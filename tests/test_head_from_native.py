"""Heads read from native PyTorch and Flax code of every kind (transposed; Conv2d + PixelShuffle; Upsample +
Conv2d; flat or nested), checked against the native model's own outputs in train and eval mode, with the
converted head built in torch and Flax; the refusals; and the heads' entry points (``save_head`` arguments,
``HeadNNX(rngs=...)`` and its training mode, a torch head's unbatched input)."""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import numpy as np
import pytest
from cases import ATOL, RTOL, require_backend

import upsample
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights, init_head

TRAINING = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(x: Any) -> np.ndarray:
    return np.asarray(x).transpose(0, 2, 3, 1)


def latents(channels: int, size: int = 3, batch: int = 4) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(batch, size, size, channels)).astype(np.float32)


# --- running the converted head ---------------------------------------------------------------


def run_torch(spec: HeadSpec, weights: HeadWeights, x: np.ndarray, training: bool) -> np.ndarray:
    import torch

    from upsample.backends.torch import head as torch_stack

    head = torch_stack.Head(spec, weights=weights).train(training)
    with torch.no_grad():
        return nhwc(head(torch.tensor(nchw(x))))


def run_flax(api: str, spec: HeadSpec, weights: HeadWeights, x: np.ndarray, training: bool) -> np.ndarray:
    import jax.numpy as jnp

    from upsample.backends.flax import head as flax_stack

    if api == "nnx":
        head = flax_stack.HeadNNX(spec, weights=weights)
        head.train() if training else head.eval()
        return np.asarray(head(jnp.asarray(x)))
    variables = flax_stack.to_variables(spec, weights)
    y, _ = flax_stack.Head(spec).apply(variables, jnp.asarray(x), train=training, mutable=["batch_stats"])
    return np.asarray(y)


def assert_every_build_matches(spec: HeadSpec, weights: HeadWeights, x: np.ndarray, want: Any, training: bool) -> None:
    """The converted head built in torch, linen and NNX gives the native model's own output."""
    builds = []
    if upsample.backends.installed("torch"):
        builds.append(("torch", lambda: run_torch(spec, weights, x, training)))
    if upsample.backends.installed("flax"):
        builds += [(api, functools.partial(run_flax, api, spec, weights, x, training)) for api in ("linen", "nnx")]
    assert builds
    for name, run in builds:
        np.testing.assert_allclose(run(), want, rtol=RTOL, atol=ATOL, err_msg=name)


# --- PyTorch --------------------------------------------------------------------------------------


def torch_model(nested: bool, norm: str) -> Any:
    """A head of all three kinds as people write it in PyTorch, with non-trivial running statistics."""
    import torch
    from torch import nn

    torch.manual_seed(3)

    def make_norm(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, momentum=0.2) if norm == "batch" else nn.GroupNorm(2, channels)

    resize = [nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(6, 6, 3, padding=1)]
    subpixel = [nn.Conv2d(6, 12, 3, padding=1), nn.PixelShuffle(2)]
    model = nn.Sequential(
        nn.ConvTranspose2d(8, 6, 4, 2, 1),
        make_norm(6),
        nn.ReLU(),
        *([nn.Sequential(*resize)] if nested else resize),
        make_norm(6),
        nn.ReLU(),
        *([nn.Sequential(*subpixel)] if nested else subpixel),
        nn.Tanh(),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


@TRAINING
@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_torch_head_of_every_kind_reproduced(nested: bool, norm: str, training: bool) -> None:
    require_backend("torch")
    import torch

    from upsample.backends.torch import head as torch_stack

    model = torch_model(nested, norm).train(training)
    spec, weights = torch_stack.from_native(model)
    assert [type(stage).__name__ for stage in spec.stages] == ["UpsampleSpec", "ResizeSpec", "SubpixelSpec"]
    x = latents(8)
    with torch.no_grad():
        want = nhwc(copy.deepcopy(model)(torch.tensor(nchw(x))))
    assert_every_build_matches(spec, weights, x, want, training)


def test_torch_package_from_native_reads_a_layer_a_kind_pattern_or_a_head() -> None:
    require_backend("torch")
    from torch import nn

    from upsample.backends import torch as ut
    from upsample.backends.torch import stack as old_name

    model = torch_model(False, "batch")
    spec, weights = ut.from_native(model)
    assert isinstance(spec, HeadSpec) and isinstance(weights, HeadWeights)
    assert spec == old_name.from_native(model)[0]
    pattern, _ = ut.from_native(nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.PixelShuffle(2)))
    assert isinstance(pattern, upsample.SubpixelSpec)
    assert isinstance(ut.from_native(nn.ConvTranspose2d(4, 4, 2, 2))[0], upsample.UpsampleSpec)


def torch_refusals() -> list[tuple[Any, str]]:
    from torch import nn

    tail = r"expected ConvTranspose2d, Conv2d \+ PixelShuffle or Upsample \+ Conv2d stages \(each also as a nested"
    return [
        (
            nn.Sequential(nn.ConvTranspose2d(4, 4, 2, 2), nn.Dropout()),
            r"sequential\[1\] \(Dropout\) has no place.*" + tail,
        ),
        (
            nn.Sequential(nn.ConvTranspose2d(4, 4, 2, 2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
            r"sequential\[1\] \(Conv2d\) must be followed by PixelShuffle to make a stage, got sequential\[2\] \(ReLU",
        ),
        (
            nn.Sequential(nn.ConvTranspose2d(4, 4, 2, 2), nn.Sequential(nn.Upsample(scale_factor=2), nn.ReLU())),
            r"sequential\[1\]\[0\] \(Upsample\) must be followed by Conv2d",
        ),
        (
            nn.Sequential(
                nn.ConvTranspose2d(4, 4, 2, 2), nn.Sequential(nn.Conv2d(4, 16, 3, stride=2), nn.PixelShuffle(2))
            ),
            r"sequential\[1\]\[0\]: conv.stride must be \(1, 1\)",
        ),
        (
            nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(4, 4, 2, 2)),
            r"sequential\[0\] \(activation\) comes before any stage: ReLU must follow one",
        ),
    ]


def test_torch_refusals_name_the_position_and_type() -> None:
    require_backend("torch")
    from upsample.backends.torch import head as torch_stack

    for model, message in torch_refusals():
        with pytest.raises(ValueError, match=message):
            torch_stack.from_native(model)


@TRAINING
def test_torch_head_takes_an_unbatched_input_as_its_layers_do(training: bool) -> None:
    require_backend("torch")
    import torch

    from upsample.backends.torch import head as torch_stack

    model = torch_model(True, "batch").train(training)
    spec, weights = torch_stack.from_native(model)
    head = torch_stack.Head(spec, weights=weights).train(training)
    x = torch.tensor(nchw(latents(8, batch=1)))
    with torch.no_grad():
        np.testing.assert_allclose(head(x[0]), model(x)[0], rtol=RTOL, atol=ATOL)


# --- Flax -----------------------------------------------------------------------------------------


def pixel_shuffle(z: Any, r: int = 2) -> Any:
    """The CRD pixel shuffle written as people write it in JAX: ``b h w (c i j) -> b (h i) (w j) c``."""
    b, h, w, channels = z.shape
    c = channels // (r * r)
    return z.reshape(b, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c)


def nearest_2x(x: Any) -> Any:
    import jax.numpy as jnp

    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


STAGES = {4: {"scale": 2, "method": "nearest"}, 7: {"scale": 2, "order": "CRD"}}


def nnx_model() -> Any:
    import jax
    from flax import nnx

    rngs = nnx.Rngs(5)
    model = nnx.Sequential(
        nnx.ConvTranspose(8, 6, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs),
        nnx.BatchNorm(6, momentum=0.8, rngs=rngs),
        functools.partial(nnx.leaky_relu, negative_slope=0.2),
        nearest_2x,
        nnx.Conv(6, 6, (3, 3), padding="SAME", rngs=rngs),
        nnx.BatchNorm(6, momentum=0.8, rngs=rngs),
        functools.partial(nnx.leaky_relu, negative_slope=0.2),
        nnx.Conv(6, 12, (3, 3), padding="SAME", rngs=rngs),
        pixel_shuffle,
        nnx.sigmoid,
    )
    keys = iter(jax.random.split(jax.random.key(2), 8))
    for norm in (model.layers[1], model.layers[5]):
        norm.mean[...] = jax.random.uniform(next(keys), (6,), minval=-0.5, maxval=0.5)
        norm.var[...] = jax.random.uniform(next(keys), (6,), minval=0.5, maxval=2.0)
        norm.bias[...] = jax.random.uniform(next(keys), (6,), minval=-0.5, maxval=0.5)
    return model


@TRAINING
def test_nnx_head_of_every_kind_reproduced(training: bool) -> None:
    require_backend("flax")
    import jax.numpy as jnp

    from upsample.backends import flax as uf

    model = nnx_model()
    spec, weights = uf.from_native(model, stages=STAGES)
    assert [type(stage).__name__ for stage in spec.stages] == ["UpsampleSpec", "ResizeSpec", "SubpixelSpec"]
    x = latents(8)
    model.train() if training else model.eval()
    want = np.asarray(model(jnp.asarray(x)))
    assert_every_build_matches(spec, weights, x, want, training)


@TRAINING
def test_linen_head_of_every_kind_reproduced(training: bool) -> None:
    require_backend("flax")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from upsample.backends.flax import head as flax_stack

    def model(train: bool) -> Any:
        return nn.Sequential(
            [
                nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding="SAME"),
                nn.GroupNorm(num_groups=2, epsilon=1e-5),
                nn.gelu,
                nearest_2x,
                nn.Conv(6, (3, 3), padding="SAME"),
                nn.GroupNorm(num_groups=2, epsilon=1e-5),
                nn.gelu,
                nn.Conv(12, (3, 3), padding="SAME"),
                pixel_shuffle,
            ]
        )

    x = jnp.asarray(latents(8))
    variables = model(training).init(jax.random.key(4), x)
    spec, weights = flax_stack.from_native(model(training), variables, stages=STAGES)
    assert spec.norm is not None and spec.norm.kind == "group"
    want = np.asarray(model(training).apply(variables, x))
    assert_every_build_matches(spec, weights, np.asarray(x), want, training)


def test_flax_refusals_name_the_position_and_type() -> None:
    require_backend("flax")
    from flax import nnx

    from upsample.backends import flax as uf

    model = nnx_model()
    refusal = r"layers\[3\] \(nearest_2x\) has no place in a head: expected nnx.ConvTranspose, nnx.Conv \+ its"
    with pytest.raises(ValueError, match=refusal):
        uf.from_native(model)
    with pytest.raises(ValueError, match=r"stages has key 3: expected the index of a nnx.Conv"):
        uf.from_native(model, stages={3: {"scale": 2, "method": "nearest"}})
    with pytest.raises(ValueError, match=r"layers\[1\] \(Dropout\) has no place in a head"):
        uf.from_native([model.layers[0], nnx.Dropout(0.5, rngs=nnx.Rngs(0))])


# --- entry points -----------------------------------------------------------------------------------

HEAD = upsample.plan(8, 8, out_channels=3, mode="subpixel", norm="batch", activation="relu")


def test_save_head_refuses_what_is_not_a_head(tmp_path: Any) -> None:
    layer = upsample.UpsampleSpec(4, 4, 2, stride=2)
    weights = init_head(HEAD)
    path = tmp_path / "head.safetensors"
    with pytest.raises(TypeError, match="spec must be an upsample.HeadSpec, got UpsampleSpec.*save_weights"):
        upsample.save_head(path, layer, upsample.init_weights(layer))
    with pytest.raises(TypeError, match="weights must be an upsample.HeadWeights, got dict.*init_head"):
        upsample.save_head(path, HEAD, weights.flat())
    with pytest.raises(TypeError, match="weights must be an upsample.HeadWeights, got Weights.*save_weights"):
        upsample.save_head(path, HEAD, weights.stages[0])
    with pytest.raises(TypeError, match=re.escape("got str; read JSON text with upsample.HeadSpec.from_json")):
        upsample.save_head(path, HEAD.to_json(), weights)
    assert not path.exists()
    upsample.save_head(path, HEAD, weights)
    assert upsample.load_head(path)[0] == HEAD


def test_head_nnx_takes_rngs_and_starts_in_training_mode() -> None:
    require_backend("flax")
    require_backend("torch")
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf
    from upsample.backends.flax import head as flax_stack

    head = flax_stack.HeadNNX(HEAD, rngs=nnx.Rngs(1))
    first = uf.UpsampleNNX(HEAD.stages[0], rngs=nnx.Rngs(1))  # the first draw of the same stream
    weights = flax_stack.get_weights(head)
    np.testing.assert_array_equal(weights.stages[0].kernel, uf.get_weights(first).kernel)
    x = latents(8, size=1)
    # nnx.BatchNorm starts in training mode: so does the head (batch statistics, as torch's train())
    np.testing.assert_allclose(
        np.asarray(head(jnp.asarray(x))), run_torch(HEAD, weights, x, True), rtol=RTOL, atol=ATOL
    )
    head.eval()  # with the running statistics that training step updated
    np.testing.assert_allclose(
        np.asarray(head(jnp.asarray(x))), run_torch(HEAD, flax_stack.get_weights(head), x, False), rtol=RTOL, atol=ATOL
    )
    with pytest.raises(TypeError, match=r"rngs must be an nnx.Rngs.*or pass weights="):
        flax_stack.HeadNNX(HEAD)
