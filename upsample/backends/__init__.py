"""The backend registry: which frameworks can build a spec, imported only when asked.

Every adapter module (``upsample.backends.torch``, ``.keras``, ``.flax``) has the same shape:
``Upsample`` (the native layer), ``build(spec, weights=None, **kwargs)``, ``get_weights``,
``set_weights`` and ``from_native``. Nothing here imports a framework until :func:`build` or
:func:`load` is called for it (as einops keeps its backends lazy).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from upsample.spec import UpsampleSpec
    from upsample.weights import Weights


class Backend(NamedTuple):
    """How to reach one backend: its adapter module, the packages it needs, and the extra to install."""

    module: str
    requires: tuple[str, ...]
    extra: str
    build_kwargs: dict[str, Any]


BACKENDS: dict[str, Backend] = {}


def register(name: str, backend: Backend) -> None:
    """Add a backend under ``name`` (adapter modules are listed here, never imported eagerly)."""
    BACKENDS[name] = backend


def _lookup(name: str) -> Backend:
    if name not in BACKENDS:
        known = ", ".join(repr(n) for n in BACKENDS) or "none registered"
        raise ValueError(f"backend must be one of {known}, got {name!r}")
    return BACKENDS[name]


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """Those of ``packages`` that are not importable (checked without importing them)."""
    return [package for package in packages if importlib.util.find_spec(package) is None]


def installed(name: str) -> bool:
    """Whether the packages ``name`` needs are importable."""
    return not missing_packages(_lookup(name).requires)


def available() -> list[str]:
    """Registered backends whose frameworks are installed."""
    return [name for name in BACKENDS if installed(name)]


def load(name: str) -> ModuleType:
    """Import the adapter module for ``name``; a missing framework names the extra to install."""
    backend = _lookup(name)
    missing = missing_packages(backend.requires)
    if missing:
        raise ImportError(
            f"backend {name!r} needs {', '.join(missing)}, which is not installed; "
            f'install it with: pip install "upsample[{backend.extra}]"'
        )
    return importlib.import_module(backend.module)


def build(spec: UpsampleSpec, name: str, *, weights: Weights | None = None, **kwargs: Any) -> Any:
    """The native layer for ``spec`` in backend ``name``, holding ``weights``.

    Without ``weights`` every backend gets the same canonical ``init_weights(spec, seed=0)``, so one spec
    builds the same layer everywhere (the layer classes themselves, called directly, keep their
    framework's own seeded initialisation, as every layer of that framework does).
    """
    from upsample.head import HeadSpec
    from upsample.weights import checked, init_weights

    backend = _lookup(name)
    if isinstance(spec, HeadSpec):  # a head checks its own weights (HeadWeights)
        return spec.build(name, weights=weights, **kwargs)
    weights = init_weights(spec, seed=0) if weights is None else checked(weights, spec)
    return load(name).build(spec, weights=weights, **{**backend.build_kwargs, **kwargs})


def own_layer(layer: Any) -> bool:
    """Whether ``layer`` is one of upsample's own layers or heads (it carries its spec), in any backend."""
    return getattr(layer, "spec", None) is not None and type(layer).__module__.startswith("upsample.")


def kind_module(package: str, spec: Any) -> ModuleType:
    """The module of backend ``package`` (e.g. ``"upsample.backends.torch"``) that builds ``spec``'s kind: the
    row's ``layer_module`` in :data:`upsample.kinds.KINDS`, so a backend package dispatches through the table."""
    from upsample import kinds

    return importlib.import_module(f"{package}.{kinds.kind_of(spec).layer_module}")


register("torch", Backend("upsample.backends.torch", ("torch",), "torch", {}))
register("keras", Backend("upsample.backends.keras", ("keras",), "keras", {}))
register("flax", Backend("upsample.backends.flax", ("jax", "flax"), "jax", {"api": "linen"}))
register("nnx", Backend("upsample.backends.flax", ("jax", "flax"), "jax", {"api": "nnx"}))
