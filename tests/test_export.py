"""Every framework's own export path on our layers, with the NumPy reference's numbers (issue 18):
``torch.onnx.export`` (dynamo) run in onnxruntime, ``torch.export.export`` and ``torch.compile(fullgraph=True)``
of the torch layer and of a model holding it; ``jax.export`` of the jitted linen and NNX layers, serialised
and deserialised; Keras ``model.export()`` to a SavedModel on TensorFlow, served without Keras. Each for a
1x1 input (the layers' matmul fast path) and a larger one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import assert_close, random_input, random_weights, require_backend, required_backends

import upsample
from upsample import backends, reference

HERE = Path(__file__).resolve().parent
SIZES = [(1, 1), (3, 2)]
# Height: Keras "same" k3 s2, the one-pixel shift torch's arguments cannot express (sliced conv path);
# width: k4 s2 "same", native everywhere. Every output pixel is live, so no dead-pixel warning.
SPEC = upsample.UpsampleSpec(3, 4, kernel_size=(3, 4), stride=2, padding="same", residual="projection")
INNER = upsample.UpsampleSpec(4, 4, kernel_size=4, stride=2, padding=1, residual="nearest")  # inside a model
TORCH_PYTREE_WARNING = pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated:FutureWarning")
BATCH = 5  # the exported programs are traced at batch 2 with a dynamic batch, and run at another


def require_packages(*packages: str, backend: str) -> None:
    """Skip when ``packages`` are missing, unless UPSAMPLE_REQUIRE_BACKENDS names ``backend`` (CI)."""
    missing = backends.missing_packages(packages)
    if not missing:
        return
    message = f"{', '.join(missing)} not installed"
    if backend in required_backends():
        pytest.fail(message + " (UPSAMPLE_REQUIRE_BACKENDS requires it)")
    pytest.skip(message)


# --- torch ---------------------------------------------------------------------------------------


def torch_model() -> tuple[Any, Any]:
    """A small generator holding our layer: ``Linear`` -> ``(B, 4, h, w)`` -> ``Upsample`` -> ``tanh``;
    returns the module and its NumPy forward (the oracle)."""
    import torch
    from torch import nn

    from upsample.backends import torch as ut

    class Generator(nn.Module):
        def __init__(self, size: tuple[int, int]) -> None:
            super().__init__()
            self.size = size
            self.fc = nn.Linear(6, INNER.in_channels * size[0] * size[1])
            self.up = ut.Upsample(INNER, weights=random_weights(INNER, 2))

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.up(self.fc(z).view(-1, INNER.in_channels, *self.size)))

    return Generator


def generator_reference(model: Any, z: np.ndarray) -> np.ndarray:
    """The generator in NumPy, NCHW out: the torch ``Linear``'s weights, then the reference layer."""
    fc_weight, fc_bias = (p.detach().numpy().astype(np.float64) for p in (model.fc.weight, model.fc.bias))
    hidden = (z @ fc_weight.T + fc_bias).reshape(len(z), INNER.in_channels, *model.size)
    weights = random_weights(INNER, 2)
    return np.tanh(reference.forward(INNER, weights, hidden.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


def torch_cases(size: tuple[int, int]) -> list[tuple[str, Any, np.ndarray, np.ndarray]]:
    """``(name, module, example input, expected NCHW output)`` for the layer alone and the generator."""
    import torch

    from upsample.backends import torch as ut

    torch.manual_seed(0)
    weights = random_weights(SPEC, 1)
    x = random_input(SPEC, BATCH, size, 1)
    layer = ut.Upsample(SPEC, weights=weights).eval()
    generator = torch_model()(size).eval()
    z = np.random.default_rng(1).normal(size=(BATCH, 6)).astype(np.float32)
    return [
        (
            "layer",
            layer,
            np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
            reference.forward(SPEC, weights, x).transpose(0, 3, 1, 2),
        ),
        ("generator", generator, z, generator_reference(generator, z)),
    ]


@pytest.mark.parametrize("size", SIZES)
def test_torch_export(size: tuple[int, int]) -> None:
    require_backend("torch")
    import torch

    for name, module, x, expected in torch_cases(size):
        example = (torch.from_numpy(x[:2]),)
        program = torch.export.export(module, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
        with torch.no_grad():
            assert_close(program.module()(torch.from_numpy(x)).numpy(), expected, f"torch.export {name}", SPEC)


@pytest.mark.parametrize("size", SIZES)
def test_torch_compile_fullgraph(size: tuple[int, int]) -> None:
    """``fullgraph=True`` raises on any graph break; ``aot_eager`` traces as inductor does, without compiling C++."""
    require_backend("torch")
    import torch

    for name, module, x, expected in torch_cases(size):
        torch._dynamo.reset()
        compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
        with torch.no_grad():
            assert_close(compiled(torch.from_numpy(x)).numpy(), expected, f"torch.compile {name}", SPEC)


@TORCH_PYTREE_WARNING
@pytest.mark.parametrize("size", SIZES)
def test_torch_onnx_export_runs_in_onnxruntime(size: tuple[int, int]) -> None:
    require_backend("torch")
    require_packages("onnx", "onnxruntime", "onnxscript", backend="onnx")
    import onnxruntime as ort
    import torch

    for name, module, x, expected in torch_cases(size):
        example = (torch.from_numpy(x[:2]),)
        program = torch.onnx.export(
            module, example, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False
        )
        session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        assert_close(got, expected, f"torch.onnx.export {name}", SPEC)


@TORCH_PYTREE_WARNING
def test_torch_onnx_export_of_a_native_layer_reads_back() -> None:
    """torch's exporter writes symmetric ``pads`` plus ``output_padding`` (issue 18); ``from_onnx`` reads them
    as ``from_native`` reads the layer."""
    require_backend("torch")
    require_packages("onnx", "onnxruntime", "onnxscript", backend="onnx")
    import torch
    from torch import nn

    from upsample.backends import torch as ut
    from upsample.onnx import from_onnx

    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(3, 4, kernel_size=(3, 4), stride=(2, 3), padding=(1, 2), output_padding=(1, 2)).eval()
    program = torch.onnx.export(conv, (torch.randn(1, 3, 2, 2),), dynamo=True, verbose=False)
    spec, weights = from_onnx(program.model_proto)
    native_spec, native_weights = ut.from_native(conv)
    assert spec == native_spec and weights.allclose(native_weights)


# --- jax -----------------------------------------------------------------------------------------


def jax_round_trip(function: Any, size: tuple[int, int], *args: Any) -> Any:
    """``jax.export`` of jitted ``function(*args, x)`` with a symbolic batch, serialised to bytes and back."""
    import jax
    import jax.numpy as jnp
    from jax import export

    (batch,) = export.symbolic_shape("b")
    x_shape = jax.ShapeDtypeStruct((batch, *size, SPEC.in_channels), jnp.float32)
    exported = export.export(jax.jit(function))(*args, x_shape)
    blob = exported.serialize()
    assert isinstance(blob, (bytes, bytearray))
    return export.deserialize(blob)


@pytest.mark.parametrize("size", SIZES)
def test_jax_export_linen(size: tuple[int, int]) -> None:
    """Weights are arguments of the exported function, as a serving system passes them."""
    require_backend("flax")
    from upsample.backends import flax as uf

    weights = random_weights(SPEC, 3)
    module, variables = uf.Upsample(SPEC), uf.to_variables(SPEC, weights)
    restored = jax_round_trip(lambda variables, x: module.apply(variables, x), size, variables)
    x = random_input(SPEC, BATCH, size, 3)
    assert_close(np.asarray(restored.call(variables, x)), reference.forward(SPEC, weights, x), "jax.export linen", SPEC)


@pytest.mark.parametrize("size", SIZES)
def test_jax_export_nnx(size: tuple[int, int]) -> None:
    """Weights as a plain dict argument (``nnx.to_pure_dict``): ``jax.export`` cannot serialise NNX ``Param``
    objects in its argument tree."""
    require_backend("flax")
    from flax import nnx

    from upsample.backends import flax as uf

    weights = random_weights(SPEC, 4)
    graphdef, state = nnx.split(uf.build(SPEC, weights=weights, api="nnx"))
    params = nnx.to_pure_dict(state)
    restored = jax_round_trip(lambda params, x: nnx.merge(graphdef, params)(x), size, params)
    x = random_input(SPEC, BATCH, size, 4)
    assert_close(np.asarray(restored.call(params, x)), reference.forward(SPEC, weights, x), "jax.export nnx", SPEC)


# --- Keras on TensorFlow -------------------------------------------------------------------------


def test_keras_export_saved_model(tmp_path: Path) -> None:
    require_backend("keras")
    require_packages("tensorflow", backend="keras")
    weights = random_weights(SPEC, 5)
    upsample.save_weights(tmp_path / "w.safetensors", SPEC, weights)
    script = [sys.executable, str(HERE / "export_keras_savedmodel.py")]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    targets = [f"{h}x{w}={tmp_path / f'saved_{h}x{w}'}" for h, w in SIZES]
    exported = subprocess.run(
        [*script, "export", str(tmp_path / "w.safetensors"), *targets], env=env, capture_output=True, text=True
    )
    assert exported.returncode == 0, exported.stderr[-4000:]
    triples, inputs = [], []
    for h, w in SIZES:
        x = random_input(SPEC, BATCH, (h, w), 5)
        np.save(tmp_path / f"x_{h}x{w}.npy", x)
        triples += [
            str(tmp_path / f"saved_{h}x{w}"),
            str(tmp_path / f"x_{h}x{w}.npy"),
            str(tmp_path / f"y_{h}x{w}.npy"),
        ]
        inputs.append(x)
    served = subprocess.run([*script, "serve", *triples], env=env, capture_output=True, text=True)
    assert served.returncode == 0, served.stderr[-4000:]
    for (h, w), x in zip(SIZES, inputs, strict=True):
        got = np.load(tmp_path / f"y_{h}x{w}.npy")
        assert_close(got, reference.forward(SPEC, weights, x), f"SavedModel {h}x{w}", SPEC)
