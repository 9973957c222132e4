"""The field's torch blocks (issue 27): each block of ``blocks_cases`` read by ``from_native`` equals the block in
the float64 reference and in the torch build (the equivalence suite runs every build), what cannot be read is refused
by name, and ``upsample.find`` lists the upsamplers of a MONAI UNet, a diffusers VAE decoder and a vocoder stack."""

from __future__ import annotations

import blocks_cases
import numpy as np
import pytest
from cases import require_library

import upsample
from upsample import Blur, ResizeSpec, SubpixelSpec, UpsampleSpec, reference

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402  # after the skip: torch is optional

from upsample.backends import torch as ut  # noqa: E402
from upsample.backends.torch import blocks  # noqa: E402


def channels_last(tensor: torch.Tensor) -> np.ndarray:
    return np.moveaxis(tensor.detach().numpy(), 1, -1)


@pytest.mark.parametrize("case", blocks_cases.CASES, ids=blocks_cases.IDS)
def test_a_block_reads_as_the_spec_that_computes_it(case: blocks_cases.BlockCase) -> None:
    module = case.make()
    x = torch.from_numpy(np.random.default_rng(1).normal(size=case.input_shape).astype(np.float32))
    spec, weights = ut.from_native(module, in_channels=case.in_channels)
    with torch.no_grad():
        theirs = channels_last(module(x))
        ours = channels_last(ut.build(spec, weights=weights)(x))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reference.forward(spec, weights, channels_last(x)), theirs, rtol=1e-4, atol=1e-5)


def test_what_each_block_becomes() -> None:
    """The kinds and blurs the blocks are, as MONAI, diffusers and fastai define them."""
    read = {case.name: ut.from_native(case.make(), in_channels=case.in_channels)[0] for case in blocks_cases.CASES}
    assert read["monai-pixelshuffle-3d"] == SubpixelSpec(4, 3, 2, 3, spatial_dims=3, blur="monai")
    assert read["monai-subpixel-scale-3"].blur == Blur.monai(3).for_rank(2)
    assert read["monai-pixelshuffle-no-pad-pool"].blur is None
    assert read["monai-deconv-2d"] == UpsampleSpec(4, 3, 2, 2)
    assert read["monai-deconvgroup"].groups == 2
    assert read["monai-nontrainable-2d"] == ResizeSpec(4, 3, 2, "linear", 1, coordinates="align_corners")
    assert read["diffusers-upsample2d-conv"] == ResizeSpec(4, 4, 2, "nearest", 3)
    assert read["diffusers-fir"] == UpsampleSpec(4, 4, 4, 2, padding=1, groups=4, use_bias=False)
    assert read["diffusers-fir-conv"] == UpsampleSpec(4, 3, 6, 2, padding=2)
    fastai = read["fastai-relu-weight-norm"]
    assert [type(stage) for stage in fastai.stages] == [SubpixelSpec, ResizeSpec]
    assert fastai.activation.kind == "relu" and fastai.stages[1].blur_alone
    assert fastai.stages[1].blur == Blur.fastai().for_rank(2) and fastai.diagnose(4).ok
    assert read["fastai-no-activation"] == SubpixelSpec(4, 3, 2, 1, blur="fastai")
    assert [stage.stride for stage in read["hifigan-stack"].stages] == [(8,), (8,), (2,), (2,)]


def test_a_blur_is_read_from_pad_and_pool_or_refused() -> None:
    assert blocks.native_blur(nn.ConstantPad3d((2, 0) * 3, 0.0), nn.AvgPool3d(3, stride=1)) == Blur.monai(3).for_rank(3)
    with pytest.raises(ValueError, match=r"changes the size: a blur pads kernel - 1 rows per axis"):
        blocks.native_blur(nn.ReplicationPad2d((1, 1, 1, 0)), nn.AvgPool2d(2, stride=1))
    with pytest.raises(ValueError, match=r"a blur's average pool must have stride 1"):
        blocks.native_blur(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2))
    with pytest.raises(ValueError, match=r"a blur pads with zeros or copies of the edge, got ConstantPad2d"):
        blocks.native_blur(nn.ConstantPad2d((1, 0, 1, 0), 1.0), nn.AvgPool2d(2, stride=1))


def test_what_has_no_spec_is_refused_by_name() -> None:
    monai = require_library("monai").networks.blocks
    require_library("diffusers")
    from diffusers.models.upsampling import Upsample2D

    both = monai.UpSample(2, 4, 3, 2, mode="nontrainable", post_conv=nn.Conv2d(3, 3, 3, padding=1))
    with pytest.raises(ValueError, match=r"with both pre_conv and post_conv: convert its parts one by one"):
        ut.from_native(both)
    with pytest.raises(ValueError, match=r"SubpixelUpsample\(conv_block=None\) is a pixel shuffle alone"):
        ut.from_native(monai.SubpixelUpsample(2, 8, 2, 2, conv_block=None))
    big = monai.UpSample(2, 4, 3, 2, mode="nontrainable", pre_conv=nn.Conv2d(4, 3, 3, padding=1))
    with pytest.raises(ValueError, match=r"pre_conv must be a 1x1 convolution \(which commutes with the resize\)"):
        ut.from_native(big)
    with pytest.raises(ValueError, match=r"Upsample2D\(norm_type=...\) normalises before upsampling"):
        ut.from_native(Upsample2D(4, use_conv=True, norm_type="ln_norm", eps=1e-5, elementwise_affine=True))
    with pytest.raises(ValueError, match=r"Upsample2D\(interpolate=False\) without a conv is the identity"):
        ut.from_native(Upsample2D(4, interpolate=False))
    with pytest.raises(TypeError, match=r"module must be one of: upsample's own layers.*MONAI UpSample.*; got Linear"):
        ut.from_native(nn.Linear(2, 2))
    batch_norm = nn.Sequential(nn.Conv2d(4, 12, 1), nn.BatchNorm2d(12), nn.PixelShuffle(2))
    with pytest.raises(ValueError, match=r"sequential\[0\] \(Conv2d\) must be followed by PixelShuffle"):
        ut.from_native(batch_norm)


def test_upsamples_own_layers_read_back() -> None:
    layer = SubpixelSpec(3, 2, blur="fastai").build("torch")
    spec, weights = ut.from_native(layer)
    assert spec == layer.spec and np.array_equal(weights.kernel, ut.get_weights(layer).kernel)


def test_find_lists_a_monai_unets_upsamplers_at_their_sizes() -> None:
    nets = require_library("monai").networks.nets
    unet = nets.UNet(2, 1, 1, (4, 8, 16), (2, 2)).eval()
    found = upsample.find(unet, torch.zeros(1, 1, 16, 16))
    assert [(f.path, f.block, f.input_size) for f in found] == [
        ("model.1.submodule.2.conv", "ConvTranspose2d", (4, 4)),  # its ADN (PReLU, dropout) is not a head's
        ("model.2", "Convolution", (8, 8)),
    ]
    assert all(isinstance(f.spec, UpsampleSpec) and "checkerboard" in f.verdict for f in found)  # k3 s2
    basic = nets.BasicUNet(2, features=(4, 4, 8, 16, 32, 4)).eval()
    assert [f.path for f in upsample.find(basic)] == [f"upcat_{i}.upsample" for i in (4, 3, 2, 1)]
    assert "ok: all" in str(upsample.find(basic))


def test_find_lists_a_diffusers_vae_decoders_upsamplers() -> None:
    require_library("diffusers")
    from diffusers.models.autoencoders.vae import Decoder

    decoder = Decoder(
        in_channels=4, out_channels=3, up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16),
        layers_per_block=1, norm_num_groups=4,
    ).eval()  # fmt: skip
    found = upsample.find(decoder, torch.zeros(1, 4, 4, 4))
    assert [(f.path, f.input_size, f.spec) for f in found] == [
        ("up_blocks.0.upsamplers.0", (4, 4), ResizeSpec(16, 16, 2, "nearest", 3)),
        ("up_blocks.1.upsamplers.0", (8, 8), ResizeSpec(16, 16, 2, "nearest", 3)),
    ]


def test_find_lists_a_vocoder_stack_whole_and_says_what_it_cannot_read() -> None:
    vocoder = next(case for case in blocks_cases.CASES if case.name == "hifigan-stack").make()
    model = nn.Sequential(nn.Conv1d(16, 16, 7, padding=3), vocoder, nn.Upsample(scale_factor=2))
    found = upsample.find(model)
    assert [(f.path, f.block) for f in found] == [("1", "Sequential"), ("2", "Upsample")]
    assert isinstance(found[0].spec, upsample.HeadSpec) and len(found[0].spec.stages) == 4
    assert found[1].spec is None and "pass example=" in found[1].problem
    seen = upsample.find(model, torch.zeros(1, 16, 3))
    assert seen[1].spec == ResizeSpec(1, scale=2, kernel_size=None, spatial_dims=1)
    assert seen[1].input_size == (3 * 8 * 8 * 2 * 2,) and seen[0].input_size == (3,)
    with pytest.raises(TypeError, match=r"model must be a torch nn.Module, a Keras layer or model, or a Flax NNX"):
        upsample.find(object())
