"""The blur's cost in torch, run by hand (issue 27): fastai's and MONAI's blurred sub-pixel blocks against the layer
``from_native`` makes of them, and fastai's blur alone (``ReplicationPad2d`` + ``AvgPool2d`` against upsample's
pad-and-slice op), forward, float32, side by side in one run (median of 30 calls each, after a warm-up call).

    python tests/blur_timing.py
"""

from __future__ import annotations

import torch
from torch import nn

import upsample
from upsample.backends import torch as ut
from upsample.runners import seconds_per_call


def compare(name: str, native: nn.Module, ours: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.allclose(ours(x), native(x), rtol=1e-4, atol=1e-5)
        theirs, mine = seconds_per_call(lambda: native(x), 30), seconds_per_call(lambda: ours(x), 30)
    print(f"{name:36s} native {theirs * 1e3:7.2f} ms  ours {mine * 1e3:7.2f} ms  ours/native {mine / theirs:5.2f}")


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(8, 64, 32, 32)
    blocks = {
        "fastai block 64->64 x2, 32x32": (nn.Conv2d(64, 256, 1), nn.ReplicationPad2d((1, 0, 1, 0))),
        "MONAI-style block 64->64 x2, 32x32": (nn.Conv2d(64, 256, 3, padding=1), nn.ConstantPad2d((1, 0, 1, 0), 0.0)),
    }
    for name, (conv, pad) in blocks.items():
        block = nn.Sequential(conv, nn.PixelShuffle(2), pad, nn.AvgPool2d(2, stride=1)).eval()
        spec, weights = ut.from_native(block)
        compare(name, block, ut.build(spec, weights=weights), x)
    blur = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1))
    alone = ut.build(upsample.ResizeSpec(64, scale=1, kernel_size=None, blur="fastai"))
    compare("fastai's blur alone, 64ch 64x64", blur, alone, torch.randn(8, 64, 64, 64))


if __name__ == "__main__":
    main()
