"""Run a built layer on NumPy data, the same way in every framework.

Each module (``torch``, ``keras``, ``flax``) has the same two functions:

- ``run(spec, weights, x, grad_y, **options) -> upsample.check.Outcome``: forward and backward with
  NHWC NumPy input and upstream gradient; output, input gradient and weight gradients come back as
  float64 NumPy in the canonical layout, with the median seconds of a forward call.
- ``bench_callables(spec, batch, input_size, **options)``: ``{"native" | "ours" | "matmul": (forward,
  forward_backward)}``, zero-argument callables that block until the result is computed.

Used by ``upsample check``, ``upsample bench`` and the cross-framework equivalence tests.
"""

import statistics
import time
from collections.abc import Callable


def seconds_per_call(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (which also compiles, where needed)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
