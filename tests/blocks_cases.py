"""The field's torch upsampling blocks (issue 27), each in each of its modes, built with seeded weights: MONAI's
``UpSample`` and ``SubpixelUpsample``, diffusers' ``Upsample1D``, ``Upsample2D`` and ``FirUpsample2D``, fastai's
``PixelShuffle_ICNR`` by its structure, weight- and spectral-normalised convolutions, and a HiFi-GAN-style vocoder
stack. Shared by the torch blocks tests and the equivalence suite (which runs the converted blocks in every build)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from cases import require_library


class BlockCase(NamedTuple):
    name: str
    make: Callable[[], Any]
    """The block (torch, seeded, eval mode)."""
    input_shape: tuple[int, ...]
    """``(N, C, *spatial)``."""
    in_channels: int | None = None
    """What ``from_native`` needs besides the module (a bare resize's channels)."""


def _seeded(make: Callable[[], Any]) -> Callable[[], Any]:
    def build() -> Any:
        import torch

        torch.manual_seed(0)
        module = make()
        with torch.no_grad():  # biases off zero, norms' gains off one: every parameter matters
            for parameter in module.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        return module.eval()

    return build


def _monai(block: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return _seeded(lambda: getattr(require_library("monai").networks.blocks, block)(*args, **kwargs))


def _diffusers(block: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        require_library("diffusers")
        from diffusers.models import upsampling

        return getattr(upsampling, block)(*args, **kwargs)

    return _seeded(make)


def _fastai(activation: bool, norm: str) -> Callable[[], Any]:
    """fastai's ``PixelShuffle_ICNR(4, 3, blur=True)`` as fastai builds it (``ConvLayer`` of a 1x1 weight-normed conv
    and, by default, a ReLU; ``PixelShuffle``; ``ReplicationPad2d((1, 0, 1, 0))``; ``AvgPool2d(2, stride=1)``)."""

    def make() -> Any:
        from torch import nn

        conv = nn.Conv2d(4, 3 * 4, 1)
        conv = nn.utils.parametrizations.weight_norm(conv) if norm == "new" else nn.utils.weight_norm(conv)
        layer = nn.Sequential(conv, nn.ReLU()) if activation else nn.Sequential(conv)
        return nn.Sequential(layer, nn.PixelShuffle(2), nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1))

    return _seeded(make)


def _vocoder() -> Any:
    """HiFi-GAN V1's upsampling rates (8, 8, 2, 2) and kernels (16, 16, 4, 4), ``padding = (k - u) // 2``, each
    ``ConvTranspose1d`` weight-normed, LeakyReLU(0.1) between them (channels scaled down)."""
    from torch import nn

    layers: list[Any] = []
    channels = 16
    for rate, kernel in zip((8, 8, 2, 2), (16, 16, 4, 4), strict=True):
        if layers:
            layers.append(nn.LeakyReLU(0.1))
        conv = nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
        layers.append(nn.utils.parametrizations.weight_norm(conv))
        channels //= 2
    return nn.Sequential(*layers)


def _spectral() -> Any:
    from torch import nn

    return nn.utils.parametrizations.spectral_norm(nn.ConvTranspose2d(4, 3, 4, 2, padding=1))


CASES: list[BlockCase] = [
    *(
        BlockCase(f"monai-deconv-{d}d", _monai("UpSample", d, 4, 3, 2, mode="deconv"), (2, 4, *(3,) * d))
        for d in (1, 2, 3)
    ),
    BlockCase("monai-deconv-k3", _monai("UpSample", 2, 4, 3, 2, kernel_size=3, mode="deconv"), (2, 4, 3, 4)),
    BlockCase("monai-deconvgroup", _monai("UpSample", 2, 4, 2, 2, mode="deconvgroup"), (2, 4, 3, 4)),
    *(
        BlockCase(f"monai-nontrainable-{d}d", _monai("UpSample", d, 4, 3, 2, mode="nontrainable"), (2, 4, *(3,) * d))
        for d in (1, 2, 3)
    ),
    BlockCase(
        "monai-nontrainable-nearest-alone",
        _monai("UpSample", 2, 4, 4, 2, mode="nontrainable", pre_conv=None, interp_mode="nearest", align_corners=None),
        (2, 4, 3, 4),
        in_channels=4,
    ),
    BlockCase(
        "monai-nontrainable-bicubic",
        _monai("UpSample", 2, 4, 3, 3, mode="nontrainable", interp_mode="bicubic", align_corners=False),
        (2, 4, 3, 4),
    ),
    *(
        BlockCase(f"monai-pixelshuffle-{d}d", _monai("UpSample", d, 4, 3, 2, mode="pixelshuffle"), (2, 4, *(3,) * d))
        for d in (1, 2, 3)
    ),
    BlockCase(
        "monai-pixelshuffle-no-pad-pool",
        _monai("UpSample", 2, 4, 3, 2, mode="pixelshuffle", apply_pad_pool=False),
        (2, 4, 3, 4),
    ),
    BlockCase("monai-subpixel-scale-3", _monai("SubpixelUpsample", 2, 4, 3, 3), (2, 4, 3, 4)),
    BlockCase("diffusers-upsample1d", _diffusers("Upsample1D", 4), (2, 4, 5), in_channels=4),
    BlockCase("diffusers-upsample1d-conv", _diffusers("Upsample1D", 4, use_conv=True, out_channels=3), (2, 4, 5)),
    BlockCase("diffusers-upsample1d-transpose", _diffusers("Upsample1D", 4, use_conv_transpose=True), (2, 4, 5)),
    BlockCase("diffusers-upsample2d-conv", _diffusers("Upsample2D", 4, use_conv=True), (2, 4, 3, 4)),
    BlockCase(
        "diffusers-upsample2d-conv-named", _diffusers("Upsample2D", 4, use_conv=True, name="Conv2d_0"), (2, 4, 3, 4)
    ),
    BlockCase("diffusers-upsample2d-transpose", _diffusers("Upsample2D", 4, use_conv_transpose=True), (2, 4, 3, 4)),
    BlockCase(
        "diffusers-upsample2d-k5",
        _diffusers("Upsample2D", 4, use_conv=True, kernel_size=5, padding=2, out_channels=3),
        (2, 4, 3, 4),
    ),
    BlockCase("diffusers-fir", _diffusers("FirUpsample2D", 4), (2, 4, 3, 4), in_channels=4),
    BlockCase("diffusers-fir-conv", _diffusers("FirUpsample2D", 4, out_channels=3, use_conv=True), (2, 4, 3, 4)),
    BlockCase(
        "diffusers-fir-conv-odd", _diffusers("FirUpsample2D", 4, use_conv=True, fir_kernel=(1, 2, 3)), (2, 4, 3, 4)
    ),
    BlockCase("fastai-relu-weight-norm", _fastai(True, "legacy"), (2, 4, 3, 4)),
    BlockCase("fastai-no-activation", _fastai(False, "new"), (2, 4, 3, 4)),
    BlockCase("hifigan-stack", _seeded(_vocoder), (2, 16, 3)),
    BlockCase("spectral-norm", _seeded(_spectral), (2, 4, 3, 4)),
]
IDS = [case.name for case in CASES]
