"""Canonical weights: the container, seeded initialisation and safetensors files.

Canonical layout (docs/conventions.md): ``kernel`` ``(kh, kw, C_in, C_out)`` in torch orientation, ``bias``
``(C_out,)`` or absent, projection ``skip`` ``(C_in, C_out)`` or absent. Every backend converts
to and from this layout, so weights move between frameworks through it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from upsample import limits
from upsample.arguments import SPATIAL_DIMS, as_axes, size_text
from upsample.messages import shown
from upsample.spec import UpsampleSpec, load_spec, require_spec

WEIGHTS_FORMAT_VERSION = "1"
SCHEMES = ("he_uniform", "glorot_uniform", "lecun_normal", "zeros", "bilinear")
SUBPIXEL_SCHEMES = ("icnr",)
SCHEME_KINDS = {"bilinear": "transposed", "icnr": "subpixel"}
"""Schemes that fit one kind only, by kind name."""
"""Schemes for sub-pixel specs only, beside :data:`SCHEMES`."""


class WeightsFileError(ValueError):
    """A weights file that is not a readable upsample safetensors file, or does not match its spec."""


@dataclasses.dataclass(frozen=True, eq=False)
class Weights:
    """Numpy arrays in the canonical layout; ``bias`` and ``skip`` are ``None`` when absent, and ``kernel`` too for
    a spec with no convolution (a resize alone: ``Weights(None)``)."""

    kernel: np.ndarray | None
    bias: np.ndarray | None = None
    skip: np.ndarray | None = None

    def __repr__(self) -> str:
        def describe(array: Any) -> str:
            return "None" if array is None else f"{np.asarray(array).dtype}{list(np.shape(array))}"

        return f"Weights(kernel={describe(self.kernel)}, bias={describe(self.bias)}, skip={describe(self.skip)})"

    def check(self, spec: UpsampleSpec) -> Weights:
        """Return ``self`` if every array has the shape ``spec`` needs, else raise ``ValueError``."""
        for name, shape in spec.weight_shapes().items():
            array = getattr(self, name)
            got = None if array is None else tuple(np.shape(array))
            if got != shape:
                need = "absent (None)" if shape is None else f"shape {shape}"
                raise ValueError(
                    f"weights.{name} has {'no array' if got is None else f'shape {got}'}; the spec needs {need}"
                )
            if array is not None and not np.issubdtype(np.asarray(array).dtype, np.floating):
                raise TypeError(f"weights.{name} must be a floating array, got dtype {np.asarray(array).dtype}")
        return self

    def astype(self, dtype: Any) -> Weights:
        """A copy with every array cast to ``dtype``."""

        def cast(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else np.asarray(array, dtype=dtype)

        return Weights(cast(self.kernel), cast(self.bias), cast(self.skip))

    def arrays(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(kernel, bias, skip)``."""
        return self.kernel, self.bias, self.skip

    def allclose(self, other: Weights, rtol: float = 1e-6, atol: float = 0.0) -> bool:
        """Same presence and values of every array."""
        for mine, theirs in zip(self.arrays(), other.arrays(), strict=True):
            if mine is None or theirs is None:
                if mine is not theirs:
                    return False
            elif not (np.shape(mine) == np.shape(theirs) and np.allclose(mine, theirs, rtol=rtol, atol=atol)):
                return False
        return True


def checked(weights: Any, spec: Any) -> Weights:
    """``weights`` checked against ``spec``; a ``TypeError`` naming the argument for anything but
    :class:`Weights` (a dict of arrays, say), before a framework sees it."""
    if not isinstance(weights, Weights):
        hint = ": wrap the arrays as upsample.Weights(kernel, bias, skip)" if isinstance(weights, dict) else ""
        raise TypeError(f"weights must be an upsample.Weights, got {type(weights).__name__}{hint}")
    return weights.check(require_spec(spec))


# --- seeded initialisation -------------------------------------------------------------------


class _Stream:
    """Uniform and normal numbers from PCG64's raw 64-bit output, the same on every platform.

    NumPy does not promise that ``Generator.uniform``/``normal`` streams stay the same across
    versions; the PCG64 bit stream itself is fixed, so the conversion is done here.
    """

    def __init__(self, seed: int) -> None:
        self._bits = np.random.PCG64(seed)

    def uniform(self, count: int) -> np.ndarray:
        raw = self._bits.random_raw(count)
        return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def normal(self, count: int) -> np.ndarray:
        """Box-Muller on pairs of uniforms."""
        half = (count + 1) // 2
        u1, u2 = 1.0 - self.uniform(half), self.uniform(half)
        radius = np.sqrt(-2.0 * np.log(u1))
        return np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:count]

    def truncated_normal(self, count: int) -> np.ndarray:
        """Standard normal values redrawn until within two standard deviations (as Keras does)."""
        out = np.empty(0)
        while out.size < count:
            draw = self.normal(2 * count + 8)
            out = np.concatenate([out, draw[np.abs(draw) <= 2.0]])
        return out[:count]


def _fans(shape: tuple[int, ...], transposed: bool = True) -> tuple[int, int]:
    """Fans of a canonical kernel as Keras and PyTorch count them.

    For a transposed convolution both see ``C_out`` as the kernel's input axis: ``fan_in = prod(k)*C_out``,
    ``fan_out = prod(k)*C_in``; for a convolution (``transposed=False``, the sub-pixel and resize kinds'
    kernel ``(*k, C_in, C_conv)``) ``fan_in = prod(k)*C_in``, ``fan_out = prod(k)*C_conv``.
    A skip ``(C_in, C_out)`` is a dense map: ``fan_in = C_in``, ``fan_out = C_out``.
    """
    if len(shape) == 2:
        return shape[0], shape[1]
    taps, c_in, c_out = math.prod(shape[:-2]), shape[-2], shape[-1]
    return (taps * c_out, taps * c_in) if transposed else (taps * c_in, taps * c_out)


def _draw(stream: _Stream, scheme: str, shape: tuple[int, ...], transposed: bool = True) -> np.ndarray:
    count = math.prod(shape)
    fan_in, fan_out = _fans(shape, transposed)
    if scheme == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        values = (2.0 * stream.uniform(count) - 1.0) * limit
    elif scheme == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        values = (2.0 * stream.uniform(count) - 1.0) * limit
    elif scheme == "lecun_normal":
        # 0.8796... is the standard deviation of a unit normal truncated at +-2 (Keras's constant).
        values = stream.truncated_normal(count) * math.sqrt(1.0 / fan_in) / 0.87962566103423978
    else:
        values = np.zeros(count)
    return values.reshape(shape)


def bilinear_kernel(size: int) -> np.ndarray:
    """The 1-D FCN bilinear interpolation filter of ``size`` taps (Long et al. 2015)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - center) / factor


def icnr_kernel(kernel: np.ndarray, scale: tuple[int, ...]) -> np.ndarray:
    """ICNR (Aitken et al. 2017): a ``(*k, C_in, C_out)`` kernel with each output channel repeated
    ``prod(scale)`` times consecutively, the canonical CRD order (as fastai's and MONAI's ``icnr_init`` in
    torch order), so a sub-pixel convolution starts as nearest upsampling of the convolution ``kernel``
    in every framework (the backends fold their shuffle order into the weight conversion)."""
    return np.repeat(kernel, math.prod(scale), axis=-1)


def init_weights(spec: UpsampleSpec, seed: int = 0, scheme: str = "he_uniform", dtype: Any = np.float32) -> Weights:
    """Canonical weights for ``spec``, deterministic for ``seed`` on every platform.

    Schemes: ``"he_uniform"`` (default), ``"glorot_uniform"``, ``"lecun_normal"``, ``"zeros"``,
    ``"bilinear"`` (transposed specs: the FCN bilinear kernel on the channel diagonal, each channel in its own
    group when grouped, identity skip; needs equal channel counts: with ``kernel_size = 2 * stride`` and crops
    ``stride / 2`` the layer is bilinear upsampling away from the borders) and ``"icnr"`` (sub-pixel specs:
    :func:`icnr_kernel`). Biases start at zero.
    A head (``HeadSpec``) gives each stage the scheme where it fits and he_uniform elsewhere
    (:func:`upsample.head_weights.stage_schemes` says which); it raises only when the scheme fits no stage.
    """
    from upsample.head_weights import init_head

    if getattr(spec, "KIND", None) == "head":  # a whole head: per-stage weights plus norms
        return init_head(spec, seed, scheme, dtype)  # type: ignore[arg-type,return-value]
    limits.check_weights(require_spec(spec))
    if scheme not in (*SCHEMES, *SUBPIXEL_SCHEMES):
        raise ValueError(f"scheme must be one of {[*SCHEMES, *SUBPIXEL_SCHEMES]}, got {scheme!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    c_in, c_out = spec.in_channels, spec.out_channels
    transposed = spec.KIND == "transposed"
    kernel_shape: tuple[int, ...] = spec.weight_shapes()["kernel"]  # type: ignore[assignment]
    if scheme in SCHEME_KINDS and spec.KIND != SCHEME_KINDS[scheme]:
        allowed = "an UpsampleSpec (transposed)" if scheme == "bilinear" else "a SubpixelSpec"
        raise ValueError(f"scheme={scheme!r} needs {allowed}, got a {type(spec).__name__}")
    if kernel_shape is None:  # a resize alone: nothing to draw
        return Weights(None)
    if scheme == "bilinear":
        if c_in != c_out:
            raise ValueError(
                f"scheme='bilinear' puts one filter per channel on the diagonal and needs in_channels == "
                f"out_channels, got {c_in} and {c_out}"
            )
        kernel = np.zeros(kernel_shape)
        filters = np.ones(())
        for size in spec.kernel_size:
            filters = np.multiply.outer(filters, bilinear_kernel(size))
        kernel[..., np.arange(c_in), np.arange(c_in) % (c_out // spec.groups)] = filters[..., None]  # own group
        skip = np.eye(c_in)
    else:
        stream = _Stream(int(seed))
        if scheme == "icnr":
            drawn = _draw(stream, "he_uniform", (*spec.kernel_size, c_in // spec.groups, c_out), transposed=False)
            kernel = icnr_kernel(drawn, spec.scale)  # type: ignore[attr-defined]  # a SubpixelSpec
        else:
            kernel = _draw(stream, scheme, kernel_shape, transposed)
        skip = _draw(stream, "he_uniform" if scheme == "icnr" else scheme, (c_in, c_out))
    return Weights(
        kernel=kernel.astype(dtype),
        bias=np.zeros(spec.out_channels if transposed else kernel_shape[-1], dtype=dtype) if spec.use_bias else None,
        skip=skip.astype(dtype) if spec.residual == "projection" else None,
    )


# --- safetensors files -----------------------------------------------------------------------


def save_weights(path: str | os.PathLike[str], spec: UpsampleSpec, weights: Weights, *, input_size: Any = None) -> None:
    """Write ``weights`` and ``spec`` (as JSON metadata, with a format version) to a safetensors file.

    ``input_size`` (int or one per spatial axis), when given, records the input size the layer is meant for
    (:func:`saved_input_size` reads it; ``upsample check`` and ``inspect`` use it).
    """
    from safetensors.numpy import save_file

    checked(weights, spec)
    tensors = {
        name: np.ascontiguousarray(array)
        for name, array in zip(("kernel", "bias", "skip"), weights.arrays(), strict=True)
        if array is not None
    }
    metadata = {"upsample.format": WEIGHTS_FORMAT_VERSION, "upsample.spec": spec.to_json()}
    if input_size is not None:
        size = as_axes("input_size", input_size, spec.spatial_dims, 1)
        spec.output_size(size)  # refuses a size the layer cannot take
        metadata["upsample.input_size"] = size_text(size)
    save_file(tensors, os.fspath(path), metadata=metadata)


def saved_input_size(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The input size a weights file records (``save_weights(..., input_size=...)``), or ``None``."""
    from safetensors import safe_open

    where = _readable(path)
    try:
        with safe_open(where, framework="numpy") as handle:
            text = (handle.metadata() or {}).get("upsample.input_size")
    except Exception as error:  # safetensors raises several types for malformed files
        raise WeightsFileError(f"{shown(where)} is not a readable safetensors file: {shown(str(error))}") from None
    if text is None:
        return None
    parts = text.split("x")
    if len(parts) not in SPATIAL_DIMS or not all(
        part.isdigit() and len(part) < 8 and 0 < int(part) <= limits.MAX_AXIS for part in parts
    ):
        raise WeightsFileError(f"{shown(where)} records an invalid input size {shown(text)}; expected HxW (L, DxHxW)")
    return tuple(int(part) for part in parts)


def _readable(path: Any) -> str:
    """``path`` as a string, refusing a missing file and a directory with the reason."""
    where = os.fspath(path)
    if os.path.isdir(where):
        raise WeightsFileError(f"weights file {shown(where)} is a directory, not a safetensors file")
    if not os.path.isfile(where):
        raise FileNotFoundError(f"weights file {shown(where)} does not exist")
    return where


def read_weights_file(path: str | os.PathLike[str]) -> tuple[str, Any, dict[str, np.ndarray]]:
    """``(path as str, spec, tensors)`` of an upsample weights file of any kind (a layer's or a head's); nothing
    in it is executed. Raises :class:`WeightsFileError` for a file that is not safetensors (a pickle, say), is
    truncated or corrupt, or lacks upsample metadata or a valid spec."""
    from safetensors import safe_open

    where = _readable(path)
    try:
        with safe_open(where, framework="numpy") as handle:
            metadata: dict[str, Any] = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several types for malformed files
        raise WeightsFileError(f"{shown(where)} is not a readable safetensors file: {shown(str(error))}") from None
    version = metadata.get("upsample.format")
    if version != WEIGHTS_FORMAT_VERSION:
        found = "no upsample metadata" if version is None else f"format version {shown(version)}"
        raise WeightsFileError(
            f"{where!r} has {found}; expected an upsample weights file (format version {WEIGHTS_FORMAT_VERSION})"
        )
    try:
        spec = load_spec(metadata.get("upsample.spec", ""))
    except (ValueError, TypeError) as error:
        raise WeightsFileError(f"{where!r} carries an invalid spec: {error}") from None
    return where, spec, tensors


def load_weights(path: str | os.PathLike[str]) -> tuple[UpsampleSpec, Weights]:
    """Read a file written by :func:`save_weights`. Nothing in the file is executed.

    Raises :class:`WeightsFileError` for a file that is not safetensors (a pickle, say), is
    truncated or corrupt, lacks upsample metadata, or whose tensors do not match its spec.
    """
    return layer_weights(*read_weights_file(path))


def layer_weights(where: str, spec: Any, tensors: dict[str, np.ndarray]) -> tuple[UpsampleSpec, Weights]:
    """One layer's spec and weights from what :func:`read_weights_file` read."""
    from upsample.head import HeadSpec

    if isinstance(spec, HeadSpec):
        raise WeightsFileError(f"{shown(where)} holds a whole head: read it with upsample.load_head")
    unknown = sorted(set(tensors) - {"kernel", "bias", "skip"})
    if unknown:
        raise WeightsFileError(f"{where!r} has unexpected tensors {shown(unknown)}; expected kernel, bias, skip")
    if "kernel" not in tensors and spec.weight_shapes()["kernel"] is not None:
        raise WeightsFileError(f"{where!r} has no 'kernel' tensor")
    weights = Weights(tensors.get("kernel"), tensors.get("bias"), tensors.get("skip"))
    try:
        weights.check(spec)
    except (ValueError, TypeError) as error:
        raise WeightsFileError(f"{where!r} does not match its own spec: {error}") from None
    return spec, weights
