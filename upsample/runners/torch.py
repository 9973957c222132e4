"""PyTorch runner (see :mod:`upsample.runners`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from upsample import resize_table
from upsample.backends import torch as adapter
from upsample.backends.torch import head as heads
from upsample.backends.torch.conv import interpolate_options
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.crosscheck import HeadOutcome, Outcome, trainable
from upsample.head import HeadSpec
from upsample.head_weights import HeadWeights
from upsample.runners import matmul_shape, seconds_per_call
from upsample.spec import UpsampleSpec
from upsample.weights import Weights


def _nchw(array: np.ndarray) -> torch.Tensor:
    """Canonical ``(N, *spatial, C)`` to torch's ``(N, C, *spatial)``, any rank."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1)))


def _nhwc(tensor: torch.Tensor) -> np.ndarray:
    """torch's ``(N, C, *spatial)`` to canonical ``(N, *spatial, C)``, float64."""
    return np.moveaxis(tensor.detach().double().numpy(), 1, -1)


def _gradients(layer: nn.Module) -> Any:
    """The parameters' gradients, converted to the canonical layout like the parameters themselves (Weights, or
    HeadWeights for a head)."""
    holder = copy.deepcopy(layer)
    with torch.no_grad():
        for target, source in zip(holder.parameters(), layer.parameters(), strict=True):
            assert source.grad is not None
            target.copy_(source.grad)
    return adapter.get_weights(holder).astype(np.float64)


def run(
    spec: UpsampleSpec,
    weights: Weights,
    x: np.ndarray,
    grad_y: np.ndarray,
    *,
    fast_path: bool = True,
    repeats: int = 5,
) -> Outcome:
    layer = adapter.build(spec, weights=weights.astype(np.float32), fast_path=fast_path)
    inputs = _nchw(x.astype(np.float32)).requires_grad_(True)
    y = layer(inputs)
    y.backward(_nchw(grad_y.astype(np.float32)))
    assert inputs.grad is not None
    with torch.no_grad():
        seconds = seconds_per_call(lambda: layer(inputs), repeats) if repeats else float("nan")
    return Outcome(_nhwc(y), _nhwc(inputs.grad), _gradients(layer), seconds)


def train_head(
    spec: HeadSpec, weights: HeadWeights, data: Sequence[tuple[np.ndarray, np.ndarray]], learning_rate: float
) -> HeadOutcome:
    head = heads.build(spec, weights=weights.astype(np.float32))
    with torch.no_grad():
        y_eval = _nhwc(head.eval()(_nchw(data[0][0].astype(np.float32))))
    head.train()
    optimizer = torch.optim.SGD(head.parameters(), lr=learning_rate)
    first = None
    for x, grad_y in data:
        optimizer.zero_grad()
        inputs = _nchw(x.astype(np.float32)).requires_grad_(True)
        y = head(inputs)
        y.backward(_nchw(grad_y.astype(np.float32)))
        assert inputs.grad is not None
        if first is None:
            first = (_nhwc(y), _nhwc(inputs.grad), trainable(_gradients(head)))
        optimizer.step()
    assert first is not None
    return HeadOutcome(*first, y_eval, heads.get_weights(head).astype(np.float64).flat())


def _native(spec: Any, ours: nn.Module) -> nn.Module:
    """torch's own modules for the same computation, with our layer's ``conv`` weights (square scales; torch
    has a pixel shuffle only in 2-D, so at other ranks the sub-pixel baseline is the convolution alone; a resize
    torch has no mode for is timed against its mode of the same method: ``resize_table.baseline``)."""
    conv: nn.Module = copy.deepcopy(ours.conv)  # type: ignore[assignment]  # the adapter's (transposed) conv
    if isinstance(spec, SubpixelSpec):
        return nn.Sequential(conv, nn.PixelShuffle(spec.scale[0])) if spec.spatial_dims == 2 else conv
    if isinstance(spec, ResizeSpec):
        row = resize_table.baseline(resize_table.TORCH, spec.interpolation, spec.spatial_dims)
        assert row is not None  # torch has a linear mode at every rank
        factor = {"scale_factor": spec.scale} if spec.size is None else {"size": spec.size}  # torch's, maybe not exact
        return nn.Sequential(nn.Upsample(**factor, **interpolate_options(row, spec.spatial_dims)), conv)
    return conv


def bench_callables(
    spec: Any, batch: int, input_size: int
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    torch.manual_seed(0)
    ours = adapter.build(spec)
    native = _native(spec, ours)
    x = torch.randn(batch, spec.in_channels, *(input_size,) * spec.spatial_dims, requires_grad=True)
    m, k, n = matmul_shape(spec, batch, input_size)
    matrix = nn.Parameter(torch.randn(k, n))
    rows = torch.randn(m, k, requires_grad=True)

    def pair(fn: Callable[[], torch.Tensor], inputs: torch.Tensor, params: list[torch.Tensor]):
        grad = torch.randn_like(fn())

        def forward() -> object:
            with torch.no_grad():
                return fn()

        def forward_backward() -> object:
            return torch.autograd.grad(fn(), [inputs, *params], grad)

        return forward, forward_backward

    return {
        "native": pair(lambda: native(x), x, list(native.parameters())),
        "ours": pair(lambda: ours(x), x, list(ours.parameters())),
        "matmul": pair(lambda: rows @ matrix, rows, [matrix]),
    }


def generator_step_callables(specs: Sequence[Any], batch: int) -> dict[str, Callable[[], object]]:
    """One SGD step (forward, backward, update) of a head of ``specs`` (ReLU between stages, Tanh at the end)
    from a ``(batch, C, 1, ...)`` one-pixel latent of the specs' rank: ``{"native": torch's own layers, "ours": our
    layers}``."""
    torch.manual_seed(0)
    ours = [adapter.build(spec) for spec in specs]
    native = [_native(spec, layer) for spec, layer in zip(specs, ours, strict=True)]
    x = torch.randn(batch, specs[0].in_channels, *(1,) * specs[0].spatial_dims)

    def step(layers: list[nn.Module]) -> Callable[[], object]:
        activations = [nn.ReLU() for _ in layers[1:]] + [nn.Tanh()]
        model = nn.Sequential(*(m for pair in zip(layers, activations, strict=True) for m in pair))
        optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)

        def one() -> object:
            optimiser.zero_grad()
            loss = model(x).square().mean()
            loss.backward()
            optimiser.step()
            return loss

        return one

    return {"native": step(native), "ours": step(ours)}
