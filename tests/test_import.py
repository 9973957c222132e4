"""``import upsample`` loads no deep-learning framework (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "jax", "flax", "keras", "optax", "onnx", "onnxruntime")


def loaded_after(code: str) -> dict[str, bool]:
    probe = f"import sys, json\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {FRAMEWORKS + ('numpy',)!r}}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def test_import_loads_no_framework_and_not_even_numpy() -> None:
    loaded = loaded_after("import upsample")
    assert not any(loaded.values()), loaded


def test_core_api_loads_no_framework() -> None:
    code = (
        "import numpy as np, upsample\n"
        "spec = upsample.UpsampleSpec.for_size(4, 8)\n"
        "upsample.reference.forward(spec, upsample.init_weights(spec), np.zeros((1, 1, 1, 4), np.float32))\n"
        "import upsample.backends; upsample.backends.available()"
    )
    loaded = loaded_after(code)
    assert not any(loaded[m] for m in FRAMEWORKS), loaded


def test_public_names() -> None:
    import upsample

    for name in upsample.__all__:
        assert getattr(upsample, name) is not None
    assert issubclass(upsample.UpsampleWarning, UserWarning)
