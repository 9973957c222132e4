"""The grouped and dilated layers every build is tested on: groups 1, 2 and depthwise x dilation 1, 2, 3 x the
padding forms (torch padding/output_padding, Keras "same"/"valid", explicit and negative crops), the real
layers that use them (FCN's depthwise bilinear k4 s2 p1, MONAI's ``deconvgroup``, a grouped vocoder stage, a
dilated 3-D stage), and the sub-pixel and resize kinds' grouped, dilated convolutions. Shared by the
per-framework group tests and the equivalence suite."""

from __future__ import annotations

import itertools
from typing import Any

from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec

CHANNELS = {1: (3, 5), 2: (4, 6), 4: (4, 4)}
"""``(in_channels, out_channels)`` per number of groups: dense, two groups, depthwise."""

FORMS = [
    {"kernel_size": 4, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    {"kernel_size": 2, "stride": 2},
    {"kernel_size": 3, "stride": 1, "padding": "same"},
    {"kernel_size": (3, 2), "stride": (3, 2), "padding": "valid"},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": ((2, -1), (0, 1))},
]
"""Kernel, stride and padding forms of the 2-D sweep."""

SWEEP = [
    UpsampleSpec(*CHANNELS[groups], groups=groups, dilation=dilation, **form)
    for groups, dilation, form in itertools.product((1, 2, 4), (1, 2, 3), FORMS)
]
"""Every 2-D combination: 54 transposed specs."""

SAMPLED = SWEEP[::5]
"""Every fifth of :data:`SWEEP` (11 specs, each groups value, dilation value and form at least once): for builds
whose tests are slow (each Keras backend)."""

FIELD = [
    UpsampleSpec(64, 64, kernel_size=4, stride=2, padding=1, groups=64),  # FCN depthwise bilinear
    UpsampleSpec(4, 4, kernel_size=2, stride=2, groups=4, spatial_dims=3),  # MONAI UpSample(mode="deconvgroup")
    UpsampleSpec(4, 2, kernel_size=(16,), stride=8, padding=4, groups=2),  # a grouped vocoder stage
    UpsampleSpec(3, 3, kernel_size=3, stride=2, padding=(2, 1, 2), dilation=(2, 1, 2), residual="nearest"),  # 3-D
    UpsampleSpec(4, 6, kernel_size=3, stride=2, padding=1, groups=2, dilation=2, residual="projection"),
]
"""Layers as real models use them, with each residual."""

CONV = [
    SubpixelSpec(4, 2, scale=2, kernel_size=3, groups=2),
    SubpixelSpec(4, 4, scale=(2, 3), kernel_size=(3, 2), groups=4, dilation=2, residual="nearest"),
    SubpixelSpec(3, 3, scale=(2,), kernel_size=3, dilation=3),
    ResizeSpec(4, 6, scale=2, method="nearest", kernel_size=3, groups=2, dilation=2),
    ResizeSpec(4, 4, scale=2, method="bilinear", kernel_size=(2, 3), groups=4, dilation=(1, 2), residual="projection"),
    ResizeSpec(2, 2, scale=2, method="nearest", kernel_size=2, groups=2, dilation=3, spatial_dims=3),
]
"""The sub-pixel and resize kinds' grouped and dilated convolutions."""

SPECS = [*SWEEP, *FIELD, *CONV]
SIZES = {1: [(1,), (5,)], 2: [(1, 1), (3, 4)], 3: [(1, 1, 1), (2, 3, 2)]}
"""Input sizes per rank: one pixel (the matmul path) and a larger, uneven one."""


def spec_id(spec: object) -> str:
    """A test id such as ``transposed-2d-g2-d(3,3)-k(3,2)s(2,1)-c((2,-1),(0,1))-None``, unique across :data:`SPECS`."""
    s: Any = spec
    shape = f"k{s.kernel_size}s{getattr(s, 'stride', getattr(s, 'scale', None))}"
    crops = f"c{s.crops}" if hasattr(s, "crops") else s.method if hasattr(s, "method") else "shuffle"
    return f"{s.KIND}-{s.spatial_dims}d-g{s.groups}-d{s.dilation}-{shape}-{crops}-{s.residual}".replace(" ", "")


IDS = [spec_id(spec) for spec in SPECS]
