"""The blurred layers every build is tested on (issue 27): each preset (fastai's replicate average, MONAI's
zero-padded average at the scale, the (1, 3, 3, 1) FIR), taps and padding that differ per axis, a gain, each
kind and rank, with and without a residual. Shared by the blur tests and the equivalence suite."""

from __future__ import annotations

from upsample import Blur, ResizeSpec, SubpixelSpec, UpsampleSpec

SPECS = [
    SubpixelSpec(3, 2, scale=2, kernel_size=3, blur="fastai"),
    SubpixelSpec(2, 2, scale=3, kernel_size=1, blur="monai", residual="nearest"),
    SubpixelSpec(3, 2, scale=(2,), kernel_size=3, blur="monai", residual="projection"),
    SubpixelSpec(2, 3, scale=2, kernel_size=(1, 3, 1), blur="monai", spatial_dims=3),
    UpsampleSpec(3, 3, kernel_size=3, stride=2, padding=1, output_padding=1, blur="fir"),
    UpsampleSpec(3, 2, kernel_size=(5,), stride=3, padding=1, blur=Blur.fir((1, 2, 1), factor=1, gain=1.5)),
    UpsampleSpec(2, 2, kernel_size=2, stride=2, blur="monai", residual="nearest", spatial_dims=3),
    ResizeSpec(2, 3, scale=2, method="nearest", kernel_size=3, blur=Blur([(0.25, 0.75), (1, 2, 1)], [(1, 0), (0, 2)])),
    ResizeSpec(3, 3, scale=1.5, method="linear", kernel_size=2, blur=Blur((1, 1), (0, 1), "replicate", gain=0.25)),
    ResizeSpec(2, scale=2, kernel_size=None, blur="monai"),
]
SIZES = {1: [(1,), (5,)], 2: [(1, 1), (3, 4)], 3: [(1, 1, 1), (2, 3, 2)]}
"""Input sizes per rank: one pixel (the matmul paths) and a larger, uneven one."""
IDS = [f"{spec.KIND}-{spec.spatial_dims}d-{i}" for i, spec in enumerate(SPECS)]
