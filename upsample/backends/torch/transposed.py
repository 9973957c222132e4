"""PyTorch adapter: :class:`Upsample`, an ``nn.Module`` (``(N, C, *spatial)`` in and out: NCL, NCHW or NCDHW)
built from an ``UpsampleSpec``.

The layer holds a real ``nn.ConvTranspose1d/2d/3d`` named ``conv`` (so ``state_dict``, ``.to()``, hooks and
``torch.nn.init`` see the usual parameters) and, for ``residual="projection"``, a bias-free 1x1 convolution
named ``skip``. Crops that torch's ``padding``/``output_padding`` express run natively; any other crop runs
the same weights on the full output, then slices and pads, then adds the bias (padded rows get it too:
docs/conventions.md). Groups and dilation are ``conv``'s own (torch's layer has both). A 1-pixel input takes a
matmul fast path (ungrouped, undilated layers: the others read the kernel as more than one matrix).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from upsample import geometry, limits
from upsample.backends.torch import common
from upsample.spec import Crops, UpsampleSpec, require_spec
from upsample.spec_kinds import dense_taps
from upsample.weights import Weights

__all__ = ["Upsample", "build", "from_native", "get_weights", "set_weights"]


class Upsample(nn.Module):
    """Transposed convolution (plus optional residual skip) exactly as ``spec`` describes, on NCHW tensors.

    Args:
        spec: the layer description.
        weights: canonical :class:`~upsample.Weights` to load; ``None`` keeps torch's default
            initialisation (seeded by ``torch.manual_seed``, like every torch layer).
        device: passed to the parameters, as for any torch layer.
        dtype: passed to the parameters, as for any torch layer.
        fast_path: compute a 1x1 input as one matmul over the stored weight (same parameters, same
            result); ``False`` always uses the transposed convolution. While ``conv`` has forward hooks or
            pre-hooks (e.g. legacy ``torch.nn.utils.spectral_norm``), 1x1 inputs go through ``conv`` too,
            so the hooks run.
    """

    def __init__(
        self,
        spec: UpsampleSpec,
        *,
        weights: Weights | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        fast_path: bool = True,
    ) -> None:
        super().__init__()
        limits.check_weights(require_spec(spec, UpsampleSpec))
        self.spec = spec
        self.fast_path = bool(fast_path)
        self._matmul = dense_taps(spec)
        rank = spec.spatial_dims
        splits = [geometry.split_for_torch(spec.crops[a], spec.stride[a]) for a in range(rank)]
        padding, output_padding = zip(*(geometry.torch_args(split.native) for split in splits), strict=True)
        self._rest: Crops = tuple(split.rest for split in splits)
        self._native = all(rest == (0, 0) for rest in self._rest)
        self._adds_rows = geometry.adds_rows(spec.crops)
        self.conv = common.TRANSPOSED[rank](
            spec.in_channels,
            spec.out_channels,
            spec.kernel_size,
            spec.stride,
            padding,
            output_padding,
            groups=spec.groups,
            bias=spec.use_bias,
            dilation=spec.dilation,
            device=device,
            dtype=dtype,
        )
        self.skip = (
            common.CONV[rank](spec.in_channels, spec.out_channels, 1, bias=False, device=device, dtype=dtype)
            if spec.residual == "projection"
            else None
        )
        if weights is not None:
            set_weights(self, weights)

    def extra_repr(self) -> str:
        return f"crops={self.spec.crops}, residual={self.spec.residual!r}, fast_path={self.fast_path}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial)`` -> ``(B, C_out, *spec.output_size(spatial))`` (``(B, C_in, H, W)`` in 2-D); an
        unbatched ``(C_in, *spatial)`` gives ``(C_out, ...)``, as for ``nn.ConvTranspose2d``."""
        return common.run(self, x, self._transposed)

    def _transposed(self, x: torch.Tensor) -> torch.Tensor:
        if self._matmul and common.takes_matmul_path(self, tuple(x.shape[2:])):
            return self._one_by_one(x.reshape(x.shape[0], self.spec.in_channels))
        y = self.conv(x)  # through the module, so its hooks (spectral norm, weight norm, user hooks) run
        return y if self._native else _crop(y, self._rest, self.conv.bias)

    def _one_by_one(self, rows: torch.Tensor) -> torch.Tensor:
        """The layer on a 1x1 input ``rows (B, C_in)``: one matmul over the weight viewed as a
        ``(C_in, C_out*prod(k))`` matrix (no copy), cropped, plus bias.

        Unless a negative crop adds rows that get the bias alone, the bias goes into the product
        (``addmm``), which saves a pass over the output.
        """
        weight, bias = self.conv.weight, self.conv.bias
        matrix = weight.reshape(weight.shape[0], -1)
        if bias is None or self._adds_rows:
            product = (rows @ matrix).view(rows.shape[0], *weight.shape[1:])
            y = _crop(product, self.spec.crops, None)
            rank = self.spec.spatial_dims
            return y if bias is None else y + common.per_channel(bias.to(y.dtype), rank)  # autocast: low dtype
        # the weight's columns run (C_out, *k): each bias value repeats over the prod(k) taps
        product = torch.addmm(bias.repeat_interleave(weight[0, 0].numel()), rows, matrix)
        return _crop(product.view(rows.shape[0], *weight.shape[1:]), self.spec.crops, None)


def _crop(y: torch.Tensor, crops: Crops, bias: torch.Tensor | None) -> torch.Tensor:
    """Apply per-axis crops to ``(N, C, *spatial)`` ``y``: slice positive crops off, pad negative ones with rows
    that get ``bias`` alone (``y`` carries the bias already when ``bias`` is given; zero rows otherwise)."""
    if all(crop == (0, 0) for crop in crops):
        return y
    windows = [geometry.slice_and_pad(crop, y.shape[2 + a]) for a, crop in enumerate(crops)]
    kept_window = (slice(None), slice(None), *(slice(start, stop) for (start, stop), _ in windows))
    y = y[kept_window]
    pads = [side for _, pad in reversed(windows) for side in pad]  # F.pad: the last axis first
    if not any(pads):
        return y
    kept = y.shape[2:]
    y = F.pad(y, pads)
    if bias is None:
        return y
    added = F.pad(torch.zeros(kept, dtype=torch.bool, device=y.device), pads, value=True)
    rank = len(crops)
    return torch.where(added, common.per_channel(bias, rank).to(y.dtype), y)  # not y + mask * bias: 0 * inf is NaN


def build(spec: UpsampleSpec, *, weights: Weights | None = None, **kwargs: Any) -> Upsample:
    """``Upsample(spec, weights=weights, **kwargs)``: the registry's entry point."""
    return Upsample(spec, weights=weights, **kwargs)


def _require_layer(layer: Any) -> Upsample:
    if not isinstance(layer, Upsample):
        raise TypeError(f"layer must be an upsample.backends.torch.Upsample, got {type(layer).__name__}")
    return layer


def get_weights(layer: Upsample) -> Weights:
    """The layer's parameters, canonical: kernel ``(*k, C_in, C_out // groups)``, skip ``(C_in, C_out)``."""
    return common.read_weights(_require_layer(layer), transposed=True)


def set_weights(layer: Upsample, weights: Weights) -> None:
    """Copy canonical ``weights`` into the layer, keeping each parameter's device and dtype."""
    common.write_weights(_require_layer(layer), weights, transposed=True)


def from_native(conv: nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) -> tuple[UpsampleSpec, Weights]:
    """The spec and canonical weights of an existing ``nn.ConvTranspose1d/2d/3d`` (e.g. from a user's model).

    ``spec, weights = from_native(conv)`` then ``Upsample(spec, weights=weights)`` gives the same outputs
    as ``conv``, groups and dilation included. Non-zero padding modes have no spec equivalent and are refused.
    """
    rank = next((r for r, kind in common.TRANSPOSED.items() if isinstance(conv, kind)), None)  # Lazy* too
    if rank is None:
        raise TypeError(f"conv must be a torch.nn.ConvTranspose1d, 2d or 3d, got {type(conv).__name__}")
    if isinstance(conv.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"conv ({type(conv).__name__}) is not initialised yet: its in_channels are inferred on the first "
            f"forward pass; run one before converting it"
        )
    if conv.padding_mode != "zeros":
        raise ValueError(f"conv.padding_mode must be 'zeros' to convert to an UpsampleSpec, got {conv.padding_mode!r}")
    spec = UpsampleSpec(
        conv.in_channels,
        conv.out_channels,
        kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.stride),
        padding=tuple(conv.padding),  # type: ignore[arg-type]  # ConvTranspose padding is always ints
        output_padding=tuple(conv.output_padding),
        use_bias=conv.bias is not None,
        spatial_dims=rank,
        groups=conv.groups,
        dilation=tuple(conv.dilation),
    )
    weights = Weights(
        kernel=common.to_numpy(common.native_weight(conv)).transpose(common.kernel_axes(rank, transposed=True)),
        bias=None if conv.bias is None else common.to_numpy(conv.bias),
    )
    return spec, weights
