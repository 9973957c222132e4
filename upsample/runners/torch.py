"""PyTorch runner (see :mod:`upsample.runners`)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from upsample.backends import torch as adapter
from upsample.check import Outcome
from upsample.runners import seconds_per_call
from upsample.spec import UpsampleSpec
from upsample.weights import Weights


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def _nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy().transpose(0, 2, 3, 1)


def _gradients(layer: adapter.Upsample) -> Weights:
    """The parameters' gradients, converted to the canonical layout like the parameters themselves."""
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
    layer = adapter.Upsample(spec, weights=weights.astype(np.float32), fast_path=fast_path)
    inputs = _nchw(x.astype(np.float32)).requires_grad_(True)
    y = layer(inputs)
    y.backward(_nchw(grad_y.astype(np.float32)))
    assert inputs.grad is not None
    with torch.no_grad():
        seconds = seconds_per_call(lambda: layer(inputs), repeats) if repeats else float("nan")
    return Outcome(_nhwc(y), _nhwc(inputs.grad), _gradients(layer), seconds)


def bench_callables(
    spec: UpsampleSpec, batch: int, input_size: int
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    torch.manual_seed(0)
    ours = adapter.Upsample(spec)
    native = copy.deepcopy(ours.conv)  # the nn.ConvTranspose2d the adapter built, same arguments and weights
    x = torch.randn(batch, spec.in_channels, input_size, input_size, requires_grad=True)
    (kh, kw) = spec.kernel_size
    matrix = nn.Parameter(torch.randn(spec.in_channels, spec.out_channels * kh * kw))
    rows = x.detach().permute(0, 2, 3, 1).reshape(-1, spec.in_channels).requires_grad_(True)

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
