"""Mixed precision in PyTorch (``torch.autocast`` on CPU) and Flax (``dtype=`` with float32 params),
issue 19: on every code path (tests/precision_cases.py ``CASES``) our layer computes in the low precision
where the framework's own layer does (the output dtype of the same native ops under the same mechanism),
keeps float32 parameters and float32 gradients for them, and agrees with the float64 NumPy reference and
its VJP within ``TOLERANCE`` (measured; docs/training-at-scale.md prints the same table). Keras:
tests/test_precision_keras.py, once per Keras backend.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import require_backend
from precision_cases import CASES, LOW_DTYPES, TOLERANCE, assert_all_within, case_inputs, reference_results

import upsample

try:
    import torch
    from torch import nn

    from upsample.backends import torch as ut
except ImportError:  # require_backend skips (locally) or fails (CI) with the install hint
    pass
try:
    import flax.linen as linen
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from upsample.backends import flax as uf
except ImportError:
    pass

DOCS = Path(__file__).resolve().parent.parent / "docs" / "training-at-scale.md"
SEED = 3

# --- the table ----------------------------------------------------------------------------------


def test_docs_print_the_tolerance_table() -> None:
    """docs/training-at-scale.md lists exactly the tolerances these tests use."""
    cell = r" *`?([\w/.-]+)`? *\|"
    rows = re.findall(r"^\|" + cell * 4, DOCS.read_text(encoding="utf-8"), re.M)
    printed = {(fw, dtype): (float(values), float(grads)) for fw, dtype, values, grads in rows if values[0].isdigit()}
    assert printed == {key: (t.values, t.weight_gradients) for key, t in TOLERANCE.items()}


# --- torch.autocast -----------------------------------------------------------------------------


def torch_native_dtype(spec: Any, x: torch.Tensor) -> torch.dtype:
    """The dtype torch's own layers give for this layer's function under the current autocast: the
    ``ConvTranspose2d`` (transposed kind) or ``Conv2d`` (sub-pixel, resize), plus ``x`` (identity skip) or a
    1x1 ``Conv2d`` of ``x`` (projection skip). Pixel shuffle, resize and crops keep the dtype."""
    if isinstance(spec, upsample.UpsampleSpec):
        conv: nn.Module = nn.ConvTranspose2d(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride)
    else:
        conv = nn.Conv2d(spec.in_channels, spec.conv_channels, spec.kernel_size, padding="same")
    y = conv(x)[:, :1, :1, :1]
    if spec.residual == "nearest":
        y = y + x[:, :1, :1, :1]
    elif spec.residual == "projection":
        y = y + nn.Conv2d(spec.in_channels, spec.out_channels, 1, bias=False)(x)[:, :1, :1, :1]
    return y.dtype


def torch_gradients(spec: Any, layer: nn.Module) -> upsample.Weights:
    """The parameters' ``.grad`` in the canonical layout, converted by the adapter's own ``get_weights``."""
    twin = spec.build("torch")
    twin.load_state_dict({name: parameter.grad for name, parameter in layer.named_parameters()})
    return ut.get_weights(twin)


def torch_cases() -> list[Any]:
    return [pytest.param(name, dtype, id=f"{name}-{dtype}") for name in CASES for dtype in LOW_DTYPES]


@pytest.mark.parametrize(("name", "dtype"), torch_cases())
def test_torch_autocast(name: str, dtype: str) -> None:
    require_backend("torch")
    spec, weights, x, grad_y = case_inputs(name, SEED)
    layer = spec.build("torch", weights=weights)
    x_t = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    with torch.autocast("cpu", dtype=getattr(torch, dtype)), warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)  # fast-path-pad has dead pixels on purpose
        y = layer(x_t)
        expected_dtype = torch_native_dtype(spec, x_t)
    (y.float() * torch.tensor(grad_y.transpose(0, 3, 1, 2))).sum().backward()
    params = dict(layer.named_parameters())
    assert all(p.grad is not None for p in params.values())
    grad_x = x_t.grad
    assert grad_x is not None
    got = (y.detach().float().permute(0, 2, 3, 1), grad_x.permute(0, 2, 3, 1), torch_gradients(spec, layer))
    assert_all_within(got, reference_results(spec, weights, x, grad_y), TOLERANCE[("torch", dtype)])
    assert {p.dtype for p in params.values()} == {torch.float32}, "parameters must stay float32"
    assert {p.grad.dtype for p in params.values()} == {torch.float32}  # type: ignore[union-attr]
    assert y.dtype == expected_dtype, f"output {y.dtype}, torch's own layers give {expected_dtype} under autocast"


# --- Flax dtype= ----------------------------------------------------------------------------------


def flax_native_dtype(spec: Any, x: jax.Array, dtype: Any) -> Any:
    """The dtype Flax's own layers give with ``dtype``: ``ConvTranspose`` (transposed kind) or ``Conv``
    (sub-pixel, resize), and ``Dense`` for a projection skip. Flax layers compute and return ``dtype``
    (they cast their inputs to it), so the identity skip is added in ``dtype`` too."""
    if isinstance(spec, upsample.UpsampleSpec):
        conv: linen.Module = linen.ConvTranspose(spec.out_channels, spec.kernel_size, spec.stride, dtype=dtype)
    else:
        conv = linen.Conv(spec.conv_channels, spec.kernel_size, padding="SAME", dtype=dtype)
    y = jax.eval_shape(lambda: conv.init_with_output(jax.random.key(0), x)[0])
    if spec.residual == "projection":
        dense = linen.Dense(spec.out_channels, use_bias=False, dtype=dtype)
        skip = jax.eval_shape(lambda: dense.init_with_output(jax.random.key(0), x)[0])
        return jnp.promote_types(y.dtype, skip.dtype)
    if spec.residual == "nearest":
        return jnp.promote_types(y.dtype, dtype)
    return y.dtype


def flax_api(layer: Any, api: str) -> tuple[Callable[[Any, Any], Any], Any, Callable[[Any], upsample.Weights]]:
    """``(apply, params, params-shaped tree -> canonical Weights)`` for a built linen or NNX layer."""
    if api == "linen":
        module, variables = layer.unbind()
        return (
            lambda p, x: module.apply({"params": p}, x),
            variables["params"],
            lambda tree: uf.get_weights((module, {"params": tree})),
        )
    graphdef, params = nnx.split(layer, nnx.Param)
    return lambda p, x: nnx.merge(graphdef, p)(x), params, lambda tree: uf.get_weights(nnx.merge(graphdef, tree))


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("dtype", LOW_DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_flax_dtype(name: str, dtype: str, api: str) -> None:
    require_backend("flax")
    spec, weights, x, grad_y = case_inputs(name, SEED)
    low = getattr(jnp, dtype)
    apply, params, canonical = flax_api(
        spec.build("flax" if api == "linen" else "nnx", weights=weights, dtype=low), api
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", upsample.UpsampleWarning)
        y, pullback = jax.vjp(apply, params, jnp.asarray(x))
    grad_params, grad_x = pullback(jnp.asarray(grad_y, y.dtype))
    got = (np.asarray(y, np.float32), np.asarray(grad_x, np.float32), canonical(grad_params))
    assert_all_within(got, reference_results(spec, weights, x, grad_y), TOLERANCE[("flax", dtype)])
    leaves = jax.tree_util.tree_leaves(params) + jax.tree_util.tree_leaves(grad_params)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.float32)}, "parameters and their gradients stay float32"
    expected_dtype = flax_native_dtype(spec, jnp.asarray(x), low)
    assert y.dtype == expected_dtype, f"output {y.dtype}, Flax's own layers give {expected_dtype} with dtype={dtype}"
