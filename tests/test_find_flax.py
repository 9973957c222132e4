"""``upsample.find`` on a Flax NNX model (issue 27): its ``ConvTranspose`` layers, an ``nnx.Sequential`` of them read
as a head, and upsample's own NNX layers, each once and in path order; a linen module is refused by name."""

from __future__ import annotations

import pytest
from cases import require_backend

import upsample
from upsample import SubpixelSpec, UpsampleSpec


def test_find_lists_an_nnx_models_upsamplers() -> None:
    require_backend("nnx")
    from flax import nnx

    class Decoder(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.down = nnx.Conv(3, 4, (3, 3), strides=2, rngs=rngs)
            self.ups = nnx.Sequential(
                nnx.ConvTranspose(4, 4, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs),
                nnx.relu,
                nnx.ConvTranspose(4, 3, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs),
            )
            self.last = nnx.ConvTranspose(3, 3, (2,), strides=(2,), rngs=rngs)
            self.ours = SubpixelSpec(3, 3, 2, blur="fastai").build("nnx")

    found = upsample.find(Decoder(nnx.Rngs(0)))
    assert [(f.path, f.block) for f in found] == [
        ("last", "ConvTranspose"), ("ours", "SubpixelNNX"), ("ups", "Sequential")
    ]  # fmt: skip
    assert found[0].spec == UpsampleSpec(3, 3, (2,), 2) and found[1].spec.blur is not None
    assert [type(stage) for stage in found[2].spec.stages] == [UpsampleSpec, UpsampleSpec]
    assert "checkerboard" in found[2].verdict  # the second stage: k3 s2


def test_a_linen_module_is_refused() -> None:
    require_backend("flax")
    from flax import linen

    with pytest.raises(TypeError, match=r"model must be a torch nn.Module, a Keras layer or model, or a Flax NNX"):
        upsample.find(linen.ConvTranspose(3, (2, 2)))
