"""Issue 16's "done when" on the full-size heads, run by hand (too slow for CI: the NumPy reference of a
512-channel head takes up to a minute per mode): ``plan(512, 64, out_channels=3, mode=m, norm="batch",
activation="relu", final_activation="tanh")``, 3 SGD steps on the same batches from the same weights in one
build, compared with the reference at rtol=1e-4, atol=1e-5 (running statistics included).

    python tests/head_big_check.py torch|linen|nnx [learning_rate]
    UPSAMPLE_KERAS_CHILD=1 KERAS_BACKEND=jax python tests/head_big_check.py keras [learning_rate]

The loss is ``sum(y * grad_y)`` over 2 x 64 x 64 x 3 values, so the default learning rate is 1e-3: at 0.05 the
third step amplifies float32 rounding of the first two past any tolerance (measured in torch).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import head_cases
import numpy as np
from head_cases import assert_weights_close, expected_steps, head_weights

import upsample
from upsample.head_weights import HeadWeights


def train(build: str, spec: Any, weights: HeadWeights, data: list[Any], rate: float) -> HeadWeights:
    """The weights after one SGD step per batch in ``build``, read back in the canonical layout."""
    if build == "torch":
        import torch

        from upsample.backends.torch import head as torch_stack

        head = spec.build("torch", weights=weights).train()
        optimizer = torch.optim.SGD(head.parameters(), lr=rate)
        for x, grad_y in data:
            optimizer.zero_grad()
            (head(torch.tensor(x.transpose(0, 3, 1, 2))) * torch.tensor(grad_y.transpose(0, 3, 1, 2))).sum().backward()
            optimizer.step()
        return torch_stack.get_weights(head)
    if build in ("linen", "nnx"):
        from test_head_flax import stepper

        from upsample.backends.flax import head as flax_stack

        head = spec.build("flax" if build == "linen" else "nnx", weights=weights)
        step = stepper(build, True)
        for x, grad_y in data:
            _, _, grads, head = step(head, x, grad_y)
            moved = {
                name: array - rate * grads.flat()[name] if "running" not in name else array
                for name, array in flax_stack.get_weights(head).flat().items()
            }
            head = flax_stack.set_weights(head, HeadWeights.from_flat(spec, moved))
        return flax_stack.get_weights(head)
    import keras
    from test_head_keras import differentiate

    from upsample.backends.keras import head as keras_stack

    head = spec.build("keras", weights=weights, data_format="channels_last")
    for x, grad_y in data:
        _, _, grads, updated = differentiate(head, x, grad_y, True)
        for variable, grad in zip(head.trainable_variables, grads, strict=True):
            variable.assign(variable - rate * keras.ops.convert_to_numpy(grad))
        for variable, value in zip(head.non_trainable_variables, updated, strict=True):
            variable.assign(value)
    return keras_stack.get_weights(head)


def main(build: str, rate: float) -> None:
    head_cases.LEARNING_RATE = rate  # the reference's SGD step reads it
    rng = np.random.default_rng(0)
    for mode in head_cases.MODES:
        spec = upsample.plan(
            512, 64, out_channels=3, mode=mode, norm="batch", activation="relu", final_activation="tanh"
        )
        weights = head_weights(spec)
        data = [
            (rng.normal(size=(2, 1, 1, 512)).astype(np.float32), rng.normal(size=(2, 64, 64, 3)).astype(np.float32))
            for _ in range(3)
        ]
        start = time.perf_counter()
        got = train(build, spec, weights, data, rate)
        assert_weights_close(got, expected_steps(spec, weights, data), f"{build} {mode}")
        seconds = time.perf_counter() - start
        print(f"{build} {mode}: agrees with the reference after 3 steps ({seconds:.1f} s, reference included)")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1e-3)
