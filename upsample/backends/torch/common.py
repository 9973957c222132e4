"""What every torch layer kind does around its own computation: the input rules, the dead-pixel
warning, unbatched input, the residual skip, hooks, and reading parameters out as NumPy
(docs/errors-and-limits.md says the rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from upsample import geometry
from upsample.checks import DeadPixelGuard, check_input
from upsample.weights import Weights, checked

TRANSPOSED: dict[int, Any] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
CONV: dict[int, Any] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
"""torch's module for each number of spatial axes."""


def per_channel(values: torch.Tensor, rank: int) -> torch.Tensor:
    """A ``(C,)`` tensor shaped to broadcast over ``(N, C, *spatial)``."""
    return values.view(-1, *(1,) * rank)


def kernel_axes(rank: int, transposed: bool) -> tuple[int, ...]:
    """The transpose that takes torch's weight to the canonical kernel: ``(C_in, C_out, *k)`` (transposed) or
    ``(C_conv, C_in, *k)`` (convolution) to ``(*k, C_in, C_out)``."""
    return (*range(2, 2 + rank), *((0, 1) if transposed else (1, 0)))


def run(layer: Any, x: Any, body: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``body(x)`` (blurred where the spec says) ``+ residual`` on ``(N, C, *spatial)`` ``x`` (unbatched
    ``(C, *spatial)`` too, as torch layers take it), after the shape-only checks, which also run while
    ``torch.compile`` traces (there the spatial sizes may be symbolic, so the output size is left to torch and the
    warning to eager calls).

    While the TorchScript tracer runs (legacy ``torch.onnx.export``, ``torch.jit.trace``) every size is a
    traced tensor: the checks and the warning, which add nothing to the graph, are skipped (they ran on the
    same module in eager mode, or run on its first eager call), and the residual's gather is recorded as
    ops on the traced sizes, so no ``TracerWarning`` comes from them."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor(x)")
    tracing = torch.jit.is_tracing()
    if not tracing:
        _check(layer, x)
    if x.dim() == layer.spec.spatial_dims + 1:
        return run(layer, x.unsqueeze(0), body).squeeze(0)
    y = body(x)
    if layer.spec.blur is not None:
        y = layer.spec.blur.apply(y, range(2, x.dim()), lambda parts, axis: torch.cat(parts, axis), torch.zeros_like)
    if layer.spec.residual is None:
        return y
    gather = _traced_residual if tracing else residual
    return y + gather(x, layer.skip, tuple(y.shape[2:]))


def check_unbatched(spec: Any, x: Any) -> None:
    """The input rules of a head's first stage ``spec`` on an unbatched ``x`` as the user passed it, before
    the head makes it a batch of one (so a message shows the user's shape); skipped while tracing."""
    if isinstance(x, torch.Tensor) and not torch.jit.is_tracing():
        _checked_size(spec, x)


def _checked_size(spec: Any, x: torch.Tensor) -> Any:
    """``checks.check_input`` on ``(N, C, *spatial)`` ``x`` (or unbatched); under ``torch.compile`` the spatial
    sizes are symbolic, so only the rest is checked (and ``None`` comes back for the size)."""
    rank = spec.spatial_dims
    shape = (*x.shape[:-rank], *(None,) * rank) if torch.compiler.is_compiling() else tuple(x.shape)
    return check_input(spec, shape, "NCHW", x.is_floating_point(), str(x.dtype), unbatched=True, dynamic=True)


def _check(layer: Any, x: torch.Tensor) -> None:
    """The input rules (``checks.check_input``), the dtype rule and the dead-pixel warning, in eager mode
    and under ``torch.compile``."""
    size = _checked_size(layer.spec, x)
    dtype = x.dtype if layer.conv is None else layer.conv.weight.dtype  # None: a resize alone, any float dtype
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(  # torch refuses mixed dtypes deep inside its kernels; say so first, naming the layer
            f"x has dtype {x.dtype} but this {type(layer).__name__}'s parameters are {dtype}; convert one of "
            f"them (x.to({dtype}) or layer.to({x.dtype})), or run under torch.autocast"
        )
    if not torch.compiler.is_compiling():
        guard = layer.__dict__.get("_guard")  # one per layer: it warns once per input size
        if guard is None:
            guard = layer.__dict__["_guard"] = DeadPixelGuard(layer.spec)
        guard(size)


def residual(x: torch.Tensor, skip: nn.Module | None, out_size: tuple[int, ...]) -> torch.Tensor:
    """The skip (identity, or the projection ``skip`` on the small input) gathered to ``out_size`` by
    nearest index; an axis of length 1 is left to broadcasting, so a 1x1 input costs no gather."""
    source = x if skip is None else skip(x)
    for axis, out_length in enumerate(out_size, start=2):
        indices = geometry.nearest_gather(source.shape[axis], out_length)
        if indices is not None:
            source = source.index_select(axis, torch.tensor(indices, device=source.device))
    return source


def _traced_residual(x: torch.Tensor, skip: nn.Module | None, out_size: tuple[Any, ...]) -> torch.Tensor:
    """:func:`residual` as the tracer records it: ``geometry.nearest_indices``'s ``((2 d + 1) in) // (2 out)``
    computed in ops from the traced sizes, so the graph holds for other input sizes too."""
    source = x if skip is None else skip(x)
    for axis, out_length in enumerate(out_size, start=2):
        destination = torch.arange(out_length, device=source.device)
        indices = torch.div((2 * destination + 1) * source.shape[axis], 2 * out_length, rounding_mode="floor")
        source = source.index_select(axis, indices)
    return source


def takes_matmul_path(layer: Any, size: tuple[int, ...]) -> bool:
    """Whether ``layer`` runs a 1-pixel input (``size`` all ones) as one matmul: not while the TorchScript
    tracer records (the graph keeps the convolution, which holds for any input size), nor when hooks would be
    skipped."""
    if not layer.fast_path or torch.jit.is_tracing():  # traced sizes are tensors: never compare them
        return False
    return all(n == 1 for n in size) and not hooked(layer.conv)


def hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run hooks (its own or global ones) that reading its weight skips:
    legacy ``spectral_norm``/``weight_norm`` recompute the weight in a forward pre-hook. Fast paths that
    read the weight step aside while there are any."""
    from torch.nn.modules import module as torch_module

    return bool(
        module._forward_pre_hooks
        or module._forward_hooks
        or torch_module._global_forward_pre_hooks
        or torch_module._global_forward_hooks
    )


def native_weight(module: nn.Module) -> torch.Tensor:
    """The weight ``module`` computes with: its ``weight``, or the one a weight norm or spectral norm makes of its own
    parameters (legacy ``torch.nn.utils.weight_norm``/``spectral_norm`` hooks and ``torch.nn.utils.parametrizations``
    alike; spectral norm as in eval mode, its power iteration not run). The normalisation itself is not carried
    over: a spec's layer trains the weight directly."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == "weight":
            return hook.compute_weight(module)
        if isinstance(hook, SpectralNorm) and hook.name == "weight":
            return hook.compute_weight(module, do_power_iteration=False)
    if parametrize.is_parametrized(module, "weight"):
        chain: Any = getattr(module, "parametrizations").weight  # noqa: B009  # torch types it as a tensor
        modes = [(part, part.training) for part in chain.modules()]
        chain.eval()
        try:
            return module.weight  # type: ignore[return-value]
        finally:
            for part, training in modes:
                part.training = training
    return module.weight  # type: ignore[return-value]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A detached CPU copy as NumPy (bfloat16, which NumPy lacks, becomes float32)."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().copy()


def read_weights(layer: Any, transposed: bool) -> Weights:
    """The layer's parameters in the canonical layout: ``conv.weight`` by :func:`kernel_axes`, its bias, and
    the projection ``skip`` (a 1x1 convolution) as ``(C_in, C_out)``."""
    conv, rank = layer.conv, layer.spec.spatial_dims
    if conv is None:  # a resize alone
        return Weights(None)
    return Weights(
        kernel=to_numpy(conv.weight).transpose(kernel_axes(rank, transposed)),
        bias=None if conv.bias is None else to_numpy(conv.bias),
        skip=None if layer.skip is None else to_numpy(layer.skip.weight).reshape(layer.skip.weight.shape[:2]).T,
    )


def write_weights(layer: Any, weights: Weights, transposed: bool) -> None:
    """Copy canonical ``weights`` into the layer (the inverse of :func:`read_weights`), keeping each
    parameter's device and dtype."""
    checked(weights, layer.spec)
    if layer.conv is None:  # a resize alone: nothing to copy
        return
    rank = layer.spec.spatial_dims
    targets = [(layer.conv.weight, np.asarray(weights.kernel).transpose(np.argsort(kernel_axes(rank, transposed))))]
    if layer.conv.bias is not None:
        targets.append((layer.conv.bias, np.asarray(weights.bias)))
    if layer.skip is not None:
        targets.append((layer.skip.weight, np.asarray(weights.skip).T.reshape(layer.skip.weight.shape)))
    with torch.no_grad():
        for parameter, value in targets:
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))
