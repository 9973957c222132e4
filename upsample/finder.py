"""Where are the upsamplers in my model? :func:`find` lists every block of a torch, Keras or Flax NNX model that
``from_native`` reads, with its path, spec and coverage verdict: what ``upsample inspect model.onnx`` reports for
an ONNX file, for a live model.

Each backend package has a ``finder`` module of the same shape (``find(model, example) -> list[Found]``) over its own
``from_native``; this module picks the one for the model's framework without importing any other.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NamedTuple

from upsample.arguments import Axes, size_text

PROBE = 8
"""The input length per axis a block is judged at when the model's sizes are unknown (no ``example``)."""


class Found(NamedTuple):
    """One block :func:`find` found."""

    path: str
    """Where it sits in the model (``up_blocks.0.upsamplers.0``; ``""``: the model itself)."""
    block: str
    """Its class name."""
    spec: Any | None
    """The spec (a ``HeadSpec`` where it is several stages); ``None`` when it has none (``problem`` says why)."""
    weights: Any | None
    input_size: Axes | None
    """Its input's spatial size in the example's forward pass; ``None`` when no example was given."""
    problem: str | None = None

    @property
    def verdict(self) -> str | None:
        """The coverage verdict at its input size (at :data:`PROBE` pixels per axis when that is unknown)."""
        if self.spec is None:
            return None
        size = self.input_size or (PROBE,) * self.spec.spatial_dims
        return str(self.spec.diagnose(size).verdict)

    def __str__(self) -> str:
        where = self.path or "(the model)"
        if self.spec is None:
            return f"{where} ({self.block})\n  not a spec: {self.problem}\n"
        at = f"at {size_text(self.input_size)}" if self.input_size else f"at {PROBE} pixels (no example given)"
        if hasattr(self.spec, "stages"):
            size = self.input_size or (PROBE,) * self.spec.spatial_dims
            table = "\n".join("    " + line for line in self.spec.table(size).splitlines())
            spec = f"a head of {len(self.spec.stages)} stages\n{table}"
        else:
            spec = self.spec.to_json()
        verdict = str(self.verdict).replace("\n", "\n    ")
        return f"{where} ({self.block})\n  spec: {spec}\n  coverage {at}: {verdict}\n"


class Findings(list[Found]):
    """What :func:`find` returns: the blocks in order; printed, one paragraph each."""

    def __str__(self) -> str:
        return "\n".join(map(str, self)) if self else "no upsampling blocks found"


_FRAMEWORKS = (("keras", "keras", "Layer"), ("torch", "torch.nn", "Module"), ("flax", "flax.nnx", "Module"))
"""Each backend package, the module holding its base class and the class: a model is matched only against
frameworks already imported (it was made with one). Keras comes first: on its torch backend a Keras layer is a torch
module too."""


def find(model: Any, example: Any = None) -> Findings:
    """Every upsampling block in ``model`` (a torch ``nn.Module``, a Keras layer or model, a Flax NNX module) that
    ``from_native`` reads, in the model's order, blocks inside a found block left out. ``example``: an input to run the
    model on (torch, NNX) so each block is judged at its own input size; Keras models know their sizes."""
    for backend, module_name, base in _FRAMEWORKS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        if module_name == "keras":
            module = module.layers
        if isinstance(model, getattr(module, base)):
            finder = importlib.import_module(f"upsample.backends.{backend}.finder")
            return Findings(finder.find(model, example))
    raise TypeError(
        f"model must be a torch nn.Module, a Keras layer or model, or a Flax NNX module; got {type(model).__name__}"
    )
