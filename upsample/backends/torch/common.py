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


def run(layer: Any, x: Any, body: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``body(x) + residual`` on NCHW ``x`` (an unbatched ``CHW`` too, as torch layers take it), after the
    shape-only checks, which also run while ``torch.compile`` traces (there the spatial sizes may be
    symbolic, so the output size is left to torch and the warning to eager calls).

    While the TorchScript tracer runs (legacy ``torch.onnx.export``, ``torch.jit.trace``) every size is a
    traced tensor: the checks and the warning, which add nothing to the graph, are skipped (they ran on the
    same module in eager mode, or run on its first eager call), and the residual's gather is recorded as
    ops on the traced sizes, so no ``TracerWarning`` comes from them."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor(x)")
    tracing = torch.jit.is_tracing()
    if not tracing:
        _check(layer, x)
    if x.dim() == 3:
        return run(layer, x.unsqueeze(0), body).squeeze(0)
    y = body(x)
    if layer.spec.residual is None:
        return y
    gather = _traced_residual if tracing else residual
    return y + gather(x, layer.skip, (y.shape[2], y.shape[3]))


def check_unbatched(spec: Any, x: Any) -> None:
    """The input rules of a head's first stage ``spec`` on an unbatched ``x`` as the user passed it, before
    the head makes it a batch of one (so a message shows the user's shape); skipped while tracing."""
    if isinstance(x, torch.Tensor) and not torch.jit.is_tracing():
        _checked_size(spec, x)


def _checked_size(spec: Any, x: torch.Tensor) -> Any:
    """``checks.check_input`` on NCHW ``x`` (or CHW); under ``torch.compile`` the spatial sizes are symbolic,
    so only the rest is checked (and ``None`` comes back for the size)."""
    shape = (*x.shape[:-2], None, None) if torch.compiler.is_compiling() else tuple(x.shape)
    return check_input(spec, shape, "NCHW", x.is_floating_point(), str(x.dtype), unbatched=True, dynamic=True)


def _check(layer: Any, x: torch.Tensor) -> None:
    """The input rules (``checks.check_input``), the dtype rule and the dead-pixel warning, in eager mode
    and under ``torch.compile``."""
    size = _checked_size(layer.spec, x)
    dtype = layer.conv.weight.dtype
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


def residual(x: torch.Tensor, skip: nn.Module | None, out_size: tuple[int, int]) -> torch.Tensor:
    """The skip (identity, or the projection ``skip`` on the small input) gathered to ``out_size`` by
    nearest index; an axis of length 1 is left to broadcasting, so a 1x1 input costs no gather."""
    source = x if skip is None else skip(x)
    for axis, out_length in zip((2, 3), out_size, strict=True):
        indices = geometry.nearest_gather(source.shape[axis], out_length)
        if indices is not None:
            source = source.index_select(axis, torch.tensor(indices, device=source.device))
    return source


def _traced_residual(x: torch.Tensor, skip: nn.Module | None, out_size: tuple[Any, Any]) -> torch.Tensor:
    """:func:`residual` as the tracer records it: ``geometry.nearest_indices``'s ``((2 d + 1) in) // (2 out)``
    computed in ops from the traced sizes, so the graph holds for other input sizes too."""
    source = x if skip is None else skip(x)
    for axis, out_length in zip((2, 3), out_size, strict=True):
        destination = torch.arange(out_length, device=source.device)
        indices = torch.div((2 * destination + 1) * source.shape[axis], 2 * out_length, rounding_mode="floor")
        source = source.index_select(axis, indices)
    return source


def takes_matmul_path(layer: Any, height: int, width: int) -> bool:
    """Whether ``layer`` runs a 1x1 input as one matmul: not while the TorchScript tracer records (the
    graph keeps the convolution, which holds for any input size), nor when hooks would be skipped."""
    return bool(layer.fast_path) and not torch.jit.is_tracing() and height == width == 1 and not hooked(layer.conv)


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


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A detached CPU copy as NumPy (bfloat16, which NumPy lacks, becomes float32)."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().copy()


def read_weights(layer: Any, kernel_axes: tuple[int, int, int, int]) -> Weights:
    """The layer's parameters in the canonical layout: ``conv.weight`` transposed by ``kernel_axes``, its
    bias, and the projection ``skip`` (a 1x1 ``Conv2d``) as ``(C_in, C_out)``."""
    conv = layer.conv
    return Weights(
        kernel=to_numpy(conv.weight).transpose(kernel_axes),
        bias=None if conv.bias is None else to_numpy(conv.bias),
        skip=None if layer.skip is None else to_numpy(layer.skip.weight)[:, :, 0, 0].T,
    )


def write_weights(layer: Any, weights: Weights, kernel_axes: tuple[int, int, int, int]) -> None:
    """Copy canonical ``weights`` into the layer (the inverse of :func:`read_weights`), keeping each
    parameter's device and dtype."""
    checked(weights, layer.spec)
    targets = [(layer.conv.weight, np.asarray(weights.kernel).transpose(np.argsort(kernel_axes)))]
    if layer.conv.bias is not None:
        targets.append((layer.conv.bias, np.asarray(weights.bias)))
    if layer.skip is not None:
        targets.append((layer.skip.weight, np.asarray(weights.skip).T[:, :, None, None]))
    with torch.no_grad():
        for parameter, value in targets:
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))
