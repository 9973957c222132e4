"""Every framework's own resize call and the ONNX ``Resize`` settings it computes, in one table that the builds
(to run the native call where it is exact), ``from_native`` (to read a layer's settings) and the docs read.

Each row was measured against onnxruntime and :mod:`upsample.interpolation` (tests/test_resize_table.py runs
every row against the framework itself); docs/resize.md prints the table with what each framework does
differently. A row holds for integer upsampling factors, the factors a :class:`~upsample.ResizeSpec` has.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from upsample.interpolation import Interpolation


@dataclasses.dataclass(frozen=True)
class NativeResize:
    """One framework call (``call``, as users write it) and the settings it computes (``interpolation``), on
    ``ranks`` spatial axes. ``options`` are the keyword arguments a build passes to the call; ``backends`` the Keras
    backends the row holds on (empty: every one)."""

    framework: str
    call: str
    interpolation: Interpolation
    ranks: tuple[int, ...]
    options: tuple[tuple[str, object], ...] = ()
    backends: tuple[str, ...] = ()


def _torch(
    mode: str, interpolation: Interpolation, ranks: tuple[int, ...] = (1, 2, 3), **options: object
) -> NativeResize:
    written = ", ".join([f"mode={mode!r}", *(f"{k}={v!r}" for k, v in options.items())])
    return NativeResize("torch", f"F.interpolate({written})", interpolation, ranks, (("mode", mode), *options.items()))


TORCH = (
    _torch("nearest", Interpolation("nearest", "asymmetric", "floor")),
    _torch("nearest-exact", Interpolation("nearest", "half_pixel", "round_prefer_ceil")),
    _torch("linear", Interpolation("linear", "half_pixel"), align_corners=False),
    _torch("linear", Interpolation("linear", "align_corners"), align_corners=True),
    _torch("bicubic", Interpolation("cubic", "half_pixel", cubic_a=-0.75), (2,), align_corners=False),
    _torch("bicubic", Interpolation("cubic", "align_corners", cubic_a=-0.75), (2,), align_corners=True),
)
"""``torch.nn.functional.interpolate`` (and ``nn.Upsample``) with ``size=`` or an integer ``scale_factor``; the
``linear`` rows are ``"linear"``, ``"bilinear"``, ``"trilinear"`` by rank."""

JAX = (
    NativeResize(
        "jax", 'jax.image.resize(method="nearest")', Interpolation("nearest"), (1, 2, 3), (("method", "nearest"),)
    ),
    NativeResize(
        "jax", 'jax.image.resize(method="linear")', Interpolation("linear"), (1, 2, 3), (("method", "linear"),)
    ),
    NativeResize(
        "jax",
        'jax.image.resize(method="cubic")',
        Interpolation("cubic", cubic_a=-0.5, exclude_outside=True),
        (1, 2, 3),
        (("method", "cubic"),),
    ),
)
"""``jax.image.resize`` (``"bilinear"``/``"trilinear"`` and ``"bicubic"`` are its names for ``linear`` and
``cubic``); ``antialias`` changes nothing when enlarging."""


def _tensorflow(function: str, setting: Interpolation, **options: object) -> NativeResize:
    written = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return NativeResize(
        "tensorflow", f"{function}({written})", setting, (2,), (("function", function), *options.items())
    )


TENSORFLOW = (
    _tensorflow("tf.image.resize", Interpolation("nearest"), method="nearest"),
    _tensorflow("tf.image.resize", Interpolation("linear"), method="bilinear"),
    _tensorflow(
        "tf.image.resize", Interpolation("cubic", cubic_a=-0.5, exclude_outside=True), method="bicubic", antialias=True
    ),
    _tensorflow("tf.compat.v1.image.resize_nearest_neighbor", Interpolation("nearest", "asymmetric", "floor")),
    _tensorflow(
        "tf.compat.v1.image.resize_nearest_neighbor", Interpolation("nearest", "align_corners"), align_corners=True
    ),
    _tensorflow("tf.compat.v1.image.resize_nearest_neighbor", Interpolation("nearest"), half_pixel_centers=True),
    _tensorflow("tf.compat.v1.image.resize_bilinear", Interpolation("linear", "asymmetric")),
    _tensorflow("tf.compat.v1.image.resize_bilinear", Interpolation("linear", "align_corners"), align_corners=True),
    _tensorflow("tf.compat.v1.image.resize_bilinear", Interpolation("linear"), half_pixel_centers=True),
)
"""TensorFlow's resize functions (2-D, NHWC); no build runs them, ``from_native`` has no layer to read, and the table
says which spec each equals. Not here: ``tf.image.resize(method="bicubic")`` without ``antialias`` and every
``tf.compat.v1.image.resize_bicubic``: Keys' cubic (``a = -0.5``, or ``-0.75`` in TF1's without half-pixel centres)
with weights read from a table of 1024 steps (measured within 2e-3 of the exact weights, which no setting matches);
``lanczos3``/``lanczos5``, ``area``, ``gaussian``, ``mitchellcubic`` (other kernels)."""


def _upsampling_2d(interpolation: str, setting: Interpolation, backends: tuple[str, ...] = ()) -> NativeResize:
    call = f"UpSampling2D(interpolation={interpolation!r})"
    return NativeResize("keras", call, setting, (2,), (("interpolation", interpolation),), backends)


KERAS_UPSAMPLING = (
    NativeResize("keras", "UpSampling1D(size)", Interpolation("nearest"), (1,)),
    _upsampling_2d("nearest", Interpolation("nearest")),
    _upsampling_2d("bilinear", Interpolation("linear")),
    _upsampling_2d("bicubic", Interpolation("cubic", cubic_a=-0.75), ("torch",)),
    _upsampling_2d("bicubic", Interpolation("cubic", cubic_a=-0.5, exclude_outside=True), ("jax",)),
    NativeResize("keras", "UpSampling3D(size)", Interpolation("nearest"), (3,)),
)
"""Keras's ``UpSampling{1,2,3}D`` layers. ``"bicubic"`` is the backend's own cubic: torch's on torch, JAX's on JAX;
on TensorFlow it is ``a = -0.5`` with weights read from a table of 1024 steps (measured within 2.2e-3 of the exact
weights), which no setting computes exactly, so it has no row (docs/resize.md)."""


def _keras_image(interpolation: str, setting: Interpolation, backends: tuple[str, ...] = ()) -> NativeResize:
    call = f"keras.ops.image.resize(interpolation={interpolation!r})"
    return NativeResize("keras", call, setting, (2,), (("interpolation", interpolation),), backends)


KERAS_IMAGE_RESIZE = (
    _keras_image("nearest", Interpolation("nearest")),
    _keras_image("bilinear", Interpolation("linear")),
    _keras_image("bicubic", Interpolation("cubic", cubic_a=-0.75), ("torch",)),
    _keras_image("bicubic", Interpolation("cubic", cubic_a=-0.5, exclude_outside=True), ("jax",)),
)
"""``keras.ops.image.resize`` and ``keras.layers.Resizing`` (which calls it), to any size (a spec's ``size``: the
coordinates map by ``size / input``), ``antialias=False`` (their default), without cropping or padding to an aspect
ratio; measured per backend enlarging and shrinking (tests/test_kinds_keras.py). ``"bicubic"`` is the backend's own,
as for ``UpSampling2D``; TensorFlow's has no row."""


def native_for(
    rows: tuple[NativeResize, ...], interpolation: Interpolation, rank: int, backend: str | None = None
) -> NativeResize | None:
    """The first row on ``rank`` axes (and Keras ``backend``) that resizes as ``interpolation`` by every integer
    factor, or ``None`` (:meth:`Interpolation.for_integer_scale`: decided from the spec alone, once)."""
    wanted = interpolation.for_integer_scale()
    for row in rows:
        if _holds(row, rank, backend) and row.interpolation.for_integer_scale() == wanted:
            return row
    return None


def native_resize(rows: tuple[NativeResize, ...], spec: Any, backend: str | None = None) -> NativeResize | None:
    """The row that computes a :class:`~upsample.ResizeSpec`'s resize (:func:`native_for`); ``None`` for a factor that
    is not an int or a spec with a ``size`` (their exactness is not measured: those take gathers)."""
    if spec.integer_scale is None:
        return None
    return native_for(rows, spec.interpolation, spec.spatial_dims, backend)


def baseline(
    rows: tuple[NativeResize, ...], interpolation: Interpolation, rank: int, backend: str | None = None
) -> NativeResize | None:
    """The framework's own resize to time a spec's against (``upsample bench``): the row that computes it, else one
    of the same method, else its linear one (the same output size either way); ``None`` if it has none."""
    exact = native_for(rows, interpolation, rank, backend)
    if exact is not None:
        return exact
    same_method = [
        row for row in rows if _holds(row, rank, backend) and row.interpolation.method == interpolation.method
    ]
    linear = [row for row in rows if _holds(row, rank, backend) and row.interpolation.method == "linear"]
    return next(iter(same_method or linear), None)


def jax_row(method: str) -> NativeResize | None:
    """The :data:`JAX` row of ``jax.image.resize(method=method)`` (its names ``bilinear``, ``trilinear``, ``bicubic``
    included)."""
    wanted = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(method, method)
    return next((row for row in JAX if dict(row.options)["method"] == wanted), None)


def keras_row(
    interpolation: str, rank: int, backend: str, rows: tuple[NativeResize, ...] = KERAS_UPSAMPLING
) -> NativeResize | None:
    """The row of ``UpSampling{rank}D(interpolation=interpolation)`` (or of ``rows``' call) on ``backend``."""
    for row in rows:
        if _holds(row, rank, backend) and dict(row.options).get("interpolation", "nearest") == interpolation:
            return row
    return None


def _holds(row: NativeResize, rank: int, backend: str | None) -> bool:
    return rank in row.ranks and (not row.backends or backend in row.backends)


def spec_settings(interpolation: Interpolation, integer_scale: bool = True) -> dict[str, Any]:
    """The :class:`~upsample.ResizeSpec` arguments that resize as ``interpolation``, in their simplest form
    (:meth:`Interpolation.for_integer_scale` by an integer factor, else :meth:`Interpolation.simplest`): what
    ``from_native`` returns."""
    simplest = interpolation.for_integer_scale() if integer_scale else interpolation.simplest()
    return {field.name: getattr(simplest, field.name) for field in dataclasses.fields(simplest)}


def torch_row(mode: str, align_corners: bool | None, rank: int) -> NativeResize | None:
    """The :data:`TORCH` row of ``F.interpolate(mode=mode, align_corners=align_corners)`` on ``rank`` axes."""
    family = "linear" if mode in ("linear", "bilinear", "trilinear") else mode
    corners = None if family.startswith("nearest") else bool(align_corners)  # nearest modes take no align_corners
    for row in TORCH:
        options = dict(row.options)
        if rank in row.ranks and options["mode"] == family and options.get("align_corners") == corners:
            return row
    return None
