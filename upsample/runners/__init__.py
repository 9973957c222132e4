"""Run a built layer on NumPy data, the same way in every framework.

Each module (``torch``, ``keras``, ``flax``) has the same functions:

- ``run(spec, weights, x, grad_y, **options) -> upsample.crosscheck.Outcome``: forward and backward with
  NHWC NumPy input and upstream gradient; output, input gradient and weight gradients come back as
  float64 NumPy in the canonical layout, with the median seconds of a forward call.
- ``bench_callables(spec, batch, input_size, **options)``: ``{"native" | "ours" | "matmul": (forward,
  forward_backward)}``, zero-argument callables that block until the result is computed. "native" is
  the framework's own layers for the same computation (a transposed convolution; a convolution and a
  pixel shuffle; a resize and a convolution), "matmul" a product of :func:`matmul_shape`.
- ``train_head(spec, weights, data, learning_rate, **options) -> upsample.crosscheck.HeadOutcome``: a whole
  head (``HeadSpec``) on ``(x, grad_y)`` batches: the first batch in training and inference mode, forward
  and backward, then one plain SGD step per batch (loss ``sum(y * grad_y)``), running statistics included.
- ``generator_step_callables(specs, batch, **options)``: ``{"native" | "ours": step}``, one SGD step of a
  DCGAN-shaped generator built from the framework's own layers or from ours (the bench's end-to-end row).

Used by ``upsample check``, ``upsample bench`` and the cross-framework equivalence tests.
"""

import statistics
import time
from collections.abc import Callable
from typing import Any


def seconds_per_call(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (which also compiles, where needed)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_shape(spec: Any, batch: int, input_size: Any) -> tuple[int, int, int]:
    """``(M, K, N)`` of the plain matmul with the layer's FLOPs, the ``"matmul"`` variant of the bench.

    A transposed convolution is ``(B*pixels, C_in) @ (C_in, C_out*prod(k))`` (one product per input pixel);
    a stride-1 convolution is ``(B*pixels, prod(k)*C_in) @ (prod(k)*C_in, C_conv)`` (im2col) on the size it
    reads: the input for sub-pixel, the resized input for resize-convolution. Groups divide the product's inner
    (convolution) or outer (transposed) width; a dilation adds no FLOPs. ``input_size``: an int or one per
    spatial axis.
    """
    import math

    from upsample.arguments import as_axes

    size = as_axes("input_size", input_size, spec.spatial_dims, 1)
    taps = math.prod(spec.kernel_size)
    if spec.KIND == "transposed":
        return batch * math.prod(size), spec.in_channels, spec.out_channels * taps // spec.groups
    read = size if spec.KIND == "subpixel" else spec.output_size(size)
    return batch * math.prod(read), taps * spec.in_channels // spec.groups, spec.conv_channels
