"""The 1-D and 3-D layers every build is tested on: the stages vocoders and volumetric networks use, plus the
crops and kinds that exercise every path (odd and negative crops, each residual, the N-d shuffle, both
resizes). Shared by the per-framework rank tests and the equivalence suite."""

from __future__ import annotations

from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec

SPECS = [
    # 1-D: a HiFi-GAN stage (k = 2u, p = (k - u) // 2), EnCodec-style odd crops, a negative crop with a
    # projection, Keras's own "same", every conv kind
    UpsampleSpec(4, 3, kernel_size=(16,), stride=8, padding=4),
    UpsampleSpec(3, 3, kernel_size=(6,), stride=3, padding=((2, 1),), residual="nearest"),
    UpsampleSpec(3, 2, kernel_size=(3,), stride=2, padding=((-1, 2),), residual="projection"),
    UpsampleSpec(3, 3, kernel_size=(4,), stride=2, padding="same", residual="nearest"),
    SubpixelSpec(3, 2, scale=(4,), kernel_size=3, residual="projection"),
    ResizeSpec(3, 3, scale=(2,), method="nearest", kernel_size=3, residual="nearest"),
    ResizeSpec(3, 2, scale=(3,), method="bilinear", kernel_size=4),
    ResizeSpec(3, 3, scale=(3,), method="cubic", kernel_size=3, cubic_a=-0.5, exclude_outside=True),
    ResizeSpec(2, 3, scale=(2,), method="linear", kernel_size=2, coordinates="align_corners"),
    # 3-D: MONAI-style deconvolutions, an odd crop on each axis, the N-d shuffle, nearest and linear resizes
    UpsampleSpec(3, 2, kernel_size=2, stride=2, spatial_dims=3),
    UpsampleSpec(3, 3, kernel_size=(4, 3, 4), stride=(2, 1, 2), padding=((1, 1), (1, 0), (2, -1)), residual="nearest"),
    SubpixelSpec(3, 2, scale=(2, 1, 3), kernel_size=(3, 1, 2), residual="projection"),
    ResizeSpec(3, 2, scale=(2, 1, 2), method="nearest", kernel_size=3, residual="projection"),
    ResizeSpec(3, 3, scale=2, method="bilinear", kernel_size=(2, 3, 1), residual="nearest", spatial_dims=3),
    ResizeSpec(2, 2, scale=(2, 3, 2), method="cubic", kernel_size=2, coordinates="align_corners"),
]
SIZES = {1: [(1,), (5,)], 3: [(1, 1, 1), (2, 3, 2)]}
"""Input sizes per rank: one pixel (the matmul path) and a larger, uneven one."""


def spec_id(index: int, spec: object) -> str:
    """A test id such as ``transposed-1d-0``."""
    return f"{spec.KIND}-{spec.spatial_dims}d-{index}"  # type: ignore[attr-defined]


IDS = [spec_id(i, spec) for i, spec in enumerate(SPECS)]
