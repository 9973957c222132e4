"""Every row of upsample.resize_table against the framework call it names (issue 25): torch's ``F.interpolate`` and
``jax.image.resize`` equal the row's settings resized by upsample.resize_ops in NumPy (float64, every rank the row
holds for, lengths 1..5, integer factors 1..3, and larger sizes); and a torch user's ``nn.Upsample`` + convolution,
read by ``from_native``, gives its own numbers in torch, Flax linen and NNX.
(Keras's rows: tests/test_kinds_keras.py.)"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import upsample
from upsample import resize_ops, resize_table
from upsample.backends.torch.conv import LINEAR

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
F = torch.nn.functional

LENGTHS, FACTORS = (1, 2, 3, 5), (1, 2, 3)


def _ours(x: np.ndarray, row: resize_table.NativeResize, axes: tuple[int, ...], scale: tuple[int, ...]) -> np.ndarray:
    size = tuple(x.shape[a] for a in axes)
    take = lambda v, indices, axis: np.take(v, indices, axis=axis)  # noqa: E731
    out = tuple(n * r for n, r in zip(size, scale, strict=True))
    return resize_ops.resize(x, row.interpolation, axes, size, out, scale, take, lambda w, _: w)


def _shapes(rank: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Sizes and factors per rank: every pair on one axis, a few uneven ones on several."""
    pairs = list(itertools.product(LENGTHS, FACTORS))
    if rank == 1:
        return [((n,), (r,)) for n, r in pairs]
    uneven = [((1, 3), (2, 3)), ((2, 5), (3, 2)), ((3, 2), (1, 3)), ((5, 4), (2, 2))]
    return uneven if rank == 2 else [((2, 1, 3), (2, 3, 2)), ((3, 2, 2), (1, 2, 3))]


@pytest.mark.parametrize("row", resize_table.TORCH, ids=lambda row: row.call)
def test_torch_rows_are_torchs_interpolate(row: resize_table.NativeResize) -> None:
    rng = np.random.default_rng(0)
    for rank in row.ranks:
        options = dict(row.options)
        options["mode"] = LINEAR[rank] if options["mode"] == "linear" else options["mode"]
        for size, scale in _shapes(rank):
            x = rng.normal(size=(2, 3, *size))
            out = tuple(n * r for n, r in zip(size, scale, strict=True))
            got = F.interpolate(torch.from_numpy(x), size=out, **options).numpy()
            np.testing.assert_allclose(got, _ours(x, row, tuple(range(2, 2 + rank)), scale), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("row", resize_table.JAX, ids=lambda row: row.call)
def test_jax_rows_are_jaxs_resize(row: resize_table.NativeResize) -> None:
    rng = np.random.default_rng(1)
    for rank in row.ranks:
        for size, scale in _shapes(rank):
            x = rng.normal(size=(2, *size, 3)).astype(np.float32)
            out = (2, *(n * r for n, r in zip(size, scale, strict=True)), 3)
            got = np.asarray(jax.image.resize(x, out, **dict(row.options)))
            np.testing.assert_allclose(got, _ours(x, row, tuple(range(1, 1 + rank)), scale), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("row", resize_table.JAX, ids=lambda row: row.call)
def test_jax_rows_resize_to_any_larger_size(row: resize_table.NativeResize) -> None:
    """``jax.image.resize`` to a size no multiple of the input (its coordinates map by ``size / input``) is the row's
    setting resized to that size (ONNX ``sizes``), on every axis at once; and a Flax user's resize + ``Conv`` to
    that size converts with ``from_native(..., size=)``."""
    import flax.linen as nn

    from upsample.backends import flax as uf

    rng = np.random.default_rng(4)
    for size, out in [((3,), (5,)), ((2, 3), (3, 7)), ((1, 4), (2, 5)), ((2, 3, 2), (5, 4, 3))]:
        x = rng.normal(size=(2, *size, 3)).astype(np.float32)
        got = np.asarray(jax.image.resize(x, (2, *out, 3), **dict(row.options)))
        take = lambda v, indices, axis: np.take(v, indices, axis=axis)  # noqa: E731
        axes, scales = tuple(range(1, 1 + len(size))), (None,) * len(size)
        want = resize_ops.resize(x, row.interpolation, axes, size, out, scales, take, lambda w, _: w)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{size} -> {out}")
        conv = nn.Conv(2, (3,) * len(size), padding="SAME")
        params = conv.init(jax.random.PRNGKey(0), got)["params"]
        spec, weights = uf.from_native(conv, params, size=out, method=dict(row.options)["method"])
        np.testing.assert_allclose(
            np.asarray(spec.build("flax", weights=weights)(x)), np.asarray(conv.apply({"params": params}, got)),
            rtol=1e-4, atol=1e-5,
        )  # fmt: skip


def test_a_setting_no_framework_computes_has_no_row() -> None:
    """Gathers, not a native call, for what no row computes (asymmetric linear; cubic anywhere but 2-D torch)."""
    from upsample.interpolation import Interpolation

    assert resize_table.native_for(resize_table.TORCH, Interpolation("linear", "asymmetric"), 2) is None
    assert resize_table.native_for(resize_table.TORCH, Interpolation("cubic"), 3) is None
    assert resize_table.native_for(resize_table.JAX, Interpolation("cubic"), 2) is None  # JAX's a = -0.5
    row = resize_table.native_for(
        resize_table.TORCH, Interpolation("nearest", "pytorch_half_pixel", "round_prefer_floor"), 1
    )
    assert row is not None and dict(row.options)["mode"] == "nearest"  # repeats, as torch's nearest does


@pytest.mark.parametrize("row", resize_table.TORCH, ids=lambda row: row.call)
def test_torch_users_upsample_converts_in_every_in_process_build(row: resize_table.NativeResize) -> None:
    """``nn.Sequential(nn.Upsample(...), nn.ConvNd)`` -> ``from_native`` -> the spec built in torch, Flax linen and
    NNX gives the module's own output (float32, ``rtol=1e-4, atol=1e-5``)."""
    from upsample.backends import torch as ut

    torch.manual_seed(0)
    options = dict(row.options)
    for rank in row.ranks:
        mode = LINEAR[rank] if options["mode"] == "linear" else options["mode"]
        conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[rank - 1](2, 3, 3, padding=1)
        upsample_ = torch.nn.Upsample(
            scale_factor=(2, 3, 2)[:rank], mode=mode, align_corners=options.get("align_corners")
        )
        module = torch.nn.Sequential(upsample_, conv)
        spec, weights = ut.from_native(module)
        x = torch.randn(2, 2, *(3, 4, 2)[:rank])
        want = module(x).detach().numpy()
        np.testing.assert_allclose(spec.build("torch", weights=weights)(x).detach().numpy(), want, rtol=1e-4, atol=1e-5)
        x_last = np.moveaxis(x.numpy(), 1, -1)
        for api in ("flax", "nnx"):
            got = np.moveaxis(np.asarray(spec.build(api, weights=weights)(x_last)), -1, 1)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{api} {row.call}")


@pytest.mark.parametrize("row", resize_table.TORCH, ids=lambda row: row.call)
def test_torch_users_upsample_to_a_size_converts_in_every_in_process_build(row: resize_table.NativeResize) -> None:
    """``nn.Upsample(size=...)`` (no multiple of the input; larger along one axis, smaller along another) + a
    convolution -> ``from_native`` -> the spec built in torch, Flax linen and NNX gives the module's own output."""
    from upsample.backends import torch as ut

    torch.manual_seed(1)
    options = dict(row.options)
    for rank in row.ranks:
        mode = LINEAR[rank] if options["mode"] == "linear" else options["mode"]
        conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[rank - 1](2, 3, 3, padding=1)
        size = (7, 3, 5)[:rank]
        module = torch.nn.Sequential(
            torch.nn.Upsample(size=size, mode=mode, align_corners=options.get("align_corners")), conv
        )
        spec, weights = ut.from_native(module)
        assert spec.size == size
        x = torch.randn(2, 2, *(3, 4, 2)[:rank])
        want = module(x).detach().numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", upsample.UpsampleWarning)  # 4 -> 3 shrinks
            np.testing.assert_allclose(
                spec.build("torch", weights=weights)(x).detach().numpy(), want, rtol=1e-4, atol=1e-5
            )
            x_last = np.moveaxis(x.numpy(), 1, -1)
            for api in ("flax", "nnx"):
                got = np.moveaxis(np.asarray(spec.build(api, weights=weights)(x_last)), -1, 1)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{api} {row.call}")


@pytest.mark.parametrize("row", resize_table.JAX, ids=lambda row: row.call)
def test_flax_users_resize_and_conv_convert_in_every_in_process_build(row: resize_table.NativeResize) -> None:
    """``jax.image.resize(method=...)`` + ``flax.linen.Conv(padding="SAME")`` -> ``from_native`` -> the spec built in
    Flax linen, NNX and torch gives the user's own output."""
    import flax.linen as nn

    from upsample.backends import flax as uf

    method = dict(row.options)["method"]
    for rank in row.ranks:
        conv = nn.Conv(3, (3,) * rank, padding="SAME")
        x = np.random.default_rng(rank).normal(size=(2, *(3, 4, 2)[:rank], 2)).astype(np.float32)
        scale = (2, 3, 2)[:rank]
        resized = jax.image.resize(x, (2, *(n * r for n, r in zip(x.shape[1:-1], scale, strict=True)), 2), method)
        params = conv.init(jax.random.PRNGKey(0), resized)["params"]
        want = np.asarray(conv.apply({"params": params}, resized))
        spec, weights = uf.from_native(conv, params, scale=scale, method=method)
        for api in ("flax", "nnx"):
            got = np.asarray(spec.build(api, weights=weights)(x))
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{api} {row.call}")
        y = spec.build("torch", weights=weights)(torch.from_numpy(np.moveaxis(x, -1, 1))).detach().numpy()
        np.testing.assert_allclose(np.moveaxis(y, 1, -1), want, rtol=1e-4, atol=1e-5, err_msg=f"torch {row.call}")
