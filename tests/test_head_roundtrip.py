"""A head planned as diffusers writes one (group norm, SiLU, bilinear resize-convolution, no biases) moves
from torch to every build and out to ONNX with the same numbers.

The weights start in torch (drawn by torch, not by :func:`upsample.init_head`), are read out with
``get_weights`` and built in Keras (this process's ``KERAS_BACKEND``), Flax linen and NNX; each build's
inference-mode output must equal torch's and the float64 heads' reference, each build must give the same
weights back, and one ONNX file with dynamic height and width must equal the reference at two input sizes.
Runs once per Keras backend (``conftest.PER_KERAS_BACKEND``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from cases import ATOL, RTOL, require_backend, required_backends

import upsample
import upsample.backends
from upsample import head_reference

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SPEC = upsample.plan(
    16,
    16,
    out_channels=3,
    mode="resize",
    method="bilinear",
    norm="group",
    activation="silu",
    use_bias=False,
    input_size=4,
)


def _torch_weights() -> upsample.HeadWeights:
    """Every parameter of the torch head drawn by torch's own generator, then read out canonically."""
    import torch

    from upsample.backends import torch as ut

    head = SPEC.build("torch")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return ut.get_weights(head)


def _outputs(weights: upsample.HeadWeights, x: np.ndarray) -> dict[str, tuple[np.ndarray, upsample.HeadWeights]]:
    """Inference-mode NHWC output and the weights read back, per build."""
    import jax.numpy as jnp
    import keras
    import torch

    from upsample.backends import flax as uf
    from upsample.backends import keras as uk
    from upsample.backends import torch as ut

    results = {}
    head = SPEC.build("torch", weights=weights).eval()
    with torch.no_grad():
        y = head(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    results["torch"] = (y, ut.get_weights(head))
    layer = SPEC.build("keras", weights=weights)
    results[f"keras/{keras.backend.backend()}"] = (
        keras.ops.convert_to_numpy(layer(x, training=False)),
        uk.get_weights(layer),
    )
    linen = SPEC.build("flax", weights=weights)
    results["flax-linen"] = (np.asarray(linen(jnp.asarray(x), train=False)), uf.get_weights(linen))
    nnx_head = SPEC.build("nnx", weights=weights)
    nnx_head.eval()
    results["flax-nnx"] = (np.asarray(nnx_head(jnp.asarray(x))), uf.get_weights(nnx_head))
    return results


def test_the_planned_head_is_what_was_asked() -> None:
    assert [stage.to_dict()["method"] for stage in SPEC.stages] == ["linear", "linear"]
    assert SPEC.norm is not None and SPEC.norm.kind == "group" and SPEC.activation is not None
    assert SPEC.activation.kind == "silu" and not any(stage.use_bias for stage in SPEC.stages)


def test_torch_weights_reach_every_build_and_onnx() -> None:
    for backend in ("torch", "keras", "flax"):
        require_backend(backend)
    missing = upsample.backends.missing_packages(("onnx", "onnxruntime"))
    if missing:
        message = f'{", ".join(missing)} not installed: pip install "upsample[onnx]"'
        if "onnx" in required_backends():
            pytest.fail(message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)")
        pytest.skip(message)
    import onnxruntime

    from upsample.onnx import to_onnx

    weights = _torch_weights()
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 16)).astype(np.float32)
    expected = head_reference.forward(SPEC, weights, x, training=False)[0]
    outputs = _outputs(weights, x)
    torch_y = outputs["torch"][0]
    for label, (y, back) in outputs.items():
        np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL, err_msg=f"{label} vs the reference")
        np.testing.assert_allclose(y, torch_y, rtol=RTOL, atol=2 * ATOL, err_msg=f"{label} vs torch")
        for name, array in weights.flat().items():
            np.testing.assert_array_equal(back.flat()[name], array, err_msg=f"{label}: {name} read back")
    session = onnxruntime.InferenceSession(to_onnx(SPEC, weights, dynamic_spatial=True).SerializeToString())
    for size in ((4, 4), (3, 5)):
        x = np.random.default_rng(size[1]).normal(size=(2, *size, 16)).astype(np.float32)
        (y,) = session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})
        expected = head_reference.forward(SPEC, weights, x, training=False)[0]
        np.testing.assert_allclose(y.transpose(0, 2, 3, 1), expected, rtol=RTOL, atol=ATOL, err_msg=f"onnx {size}")


def test_round_trip_is_sensitive_to_the_weights() -> None:
    """The check above can fail: other norm offsets give another output, far beyond the tolerance."""
    require_backend("torch")
    weights = _torch_weights()
    flat = weights.flat()
    name = next(n for n in flat if "offset" in n)
    moved = {**flat, name: flat[name] + 0.1}
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 16)).astype(np.float32)
    a = head_reference.forward(SPEC, weights, x, training=False)[0]
    b = head_reference.forward(SPEC, upsample.HeadWeights.from_flat(SPEC, moved), x, training=False)[0]
    assert np.abs(a - b).max() > 100 * ATOL
