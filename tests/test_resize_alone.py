"""A resize with no convolution (``ResizeSpec(kernel_size=None)``, issue 25): torch's bare ``nn.Upsample`` read by
``from_native`` and computed by every in-process build, the spec's rules, its JSON and weights file. The sweep
(``kind_cases.SWEEP``) runs such specs in all six builds and ONNX, and ``head_cases`` one as a head's stage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import upsample
from upsample import ResizeSpec

torch = pytest.importorskip("torch")
from upsample.backends import torch as ut  # noqa: E402  # after the skip: torch is optional


@pytest.mark.parametrize(
    ("arguments", "pattern"),
    [
        ({"out_channels": 3}, r"out_channels must be 2 for a resize alone \(kernel_size=None: no convolution\), got 3"),
        ({"groups": 2}, r"groups must be 1 for a resize alone"),
        ({"dilation": 2}, r"dilation must be \(1, 1\) for a resize alone"),
        ({"residual": "nearest"}, r"residual must be None for a resize alone"),
        ({"use_bias": True}, r"use_bias=True needs a convolution; kernel_size=None is a resize alone"),
    ],
)
def test_a_resize_alone_keeps_its_channels_and_has_no_weights(arguments: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ResizeSpec(2, kernel_size=None, **arguments)


def test_spec_cost_json_and_weights_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = ResizeSpec(3, scale=1.5, method="linear", kernel_size=None)
    assert spec.resize_only and not ResizeSpec(3).resize_only
    assert spec.use_bias is False and ResizeSpec(3).use_bias is True and ResizeSpec(3, use_bias=False).use_bias is False
    assert (
        spec.num_params == 0
        and spec.flops(4) == 0
        and spec.weight_shapes() == dict.fromkeys(("kernel", "bias", "skip"))
    )
    assert spec.coverage(4).tolist() == np.ones((6, 6), int).tolist() and spec.diagnose(4).ok
    assert spec.to_dict()["kernel_size"] is None and upsample.load_spec(spec.to_json()) == spec
    weights = upsample.init_weights(spec)
    assert weights.arrays() == (None, None, None)
    path = tmp_path / "resize.safetensors"
    upsample.save_weights(path, spec, weights)
    assert upsample.load_weights(path)[0] == spec and upsample.load_weights(path)[1].arrays() == (None, None, None)
    with pytest.raises(ValueError, match=r"weights.kernel has shape \(1, 1, 3, 3\); the spec needs absent"):
        upsample.Weights(np.zeros((1, 1, 3, 3), np.float32)).check(spec)


@pytest.mark.parametrize(
    ("module", "rank"),
    [
        (lambda: torch.nn.Upsample(scale_factor=3, mode="linear"), 1),
        (lambda: torch.nn.Upsample(scale_factor=2), 2),
        (lambda: torch.nn.Upsample(size=(5, 7), mode="bicubic", align_corners=True), 2),
        (lambda: torch.nn.Upsample(scale_factor=(2, 1, 3), mode="nearest-exact"), 3),
        (lambda: torch.nn.Upsample(scale_factor=2, mode="trilinear"), 3),
    ],
)
def test_torch_upsample_alone_converts_in_every_in_process_build(module, rank: int) -> None:  # type: ignore[no-untyped-def]
    """A bare ``nn.Upsample`` (its rank from a tuple or its mode), read with ``in_channels``, built in torch, Flax
    linen and NNX, gives torch's own output; the reference the same."""
    upsampler = module()
    spec, weights = ut.from_native(upsampler, in_channels=2)
    assert spec.resize_only and spec.spatial_dims == rank and weights.arrays() == (None, None, None)
    x = torch.randn(2, 2, *(3, 4, 2)[:rank])
    want = upsampler(x).numpy()
    np.testing.assert_allclose(ut.build(spec, weights=weights)(x).numpy(), want, rtol=1e-5, atol=1e-6)
    x_last = np.moveaxis(x.numpy(), 1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)  # a factor of 1 along one axis
        np.testing.assert_allclose(
            np.moveaxis(upsample.reference.forward(spec, weights, x_last), -1, 1), want, rtol=1e-5, atol=1e-6
        )
        for api in ("flax", "nnx"):
            got = np.moveaxis(np.asarray(spec.build(api, weights=weights)(x_last)), -1, 1)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=api)


def test_torch_upsample_alone_needs_its_channels() -> None:
    with pytest.raises(TypeError, match=r"from_native\(nn.Upsample\(...\), in_channels=C\)"):
        ut.from_native(torch.nn.Upsample(scale_factor=2))
    with pytest.raises(ValueError, match="give size="):
        ut.from_native(torch.nn.Upsample(scale_factor=1.5), in_channels=2)


def test_onnx_export_is_the_resize_alone() -> None:
    ort = pytest.importorskip("onnxruntime")
    from upsample.onnx import to_onnx

    spec = ResizeSpec(2, size=(5, 7), method="cubic", kernel_size=None)
    model = to_onnx(spec, upsample.init_weights(spec), input_size=(3, 4))
    assert {node.op_type for node in model.graph.node} == {"Shape", "Slice", "Concat", "Resize", "Identity"}
    x = np.random.default_rng(0).normal(size=(2, 2, 3, 4)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = np.moveaxis(upsample.reference.forward(spec, upsample.Weights(None), np.moveaxis(x, 1, -1)), -1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
