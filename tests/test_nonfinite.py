"""NaN and infinities: the reference propagates a non-finite input pixel to exactly the outputs that read it,
and every build agrees with it on which outputs are NaN, +inf and -inf.

The oracle of "which outputs read input pixel ``j``" is independent of how the reference propagates
NaN: the reference on an input that is zero except a 1 at ``j``, with nonnegative weights (no sum can
cancel), is nonzero exactly there. The builds run through the same runners as ``upsample check``
(``crosscheck.TARGETS``); like tests/test_equivalence.py this module runs once per Keras backend, Keras
in each child, torch in the Keras-on-torch child and Flax linen/NNX in the Keras-on-JAX child.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from head_cases import head_weights
from test_equivalence import IN_PROCESS, run_everywhere

import upsample
from upsample import ResizeSpec, SubpixelSpec, UpsampleSpec, Weights, crosscheck, head_reference, reference
from upsample.head import HeadSpec, Norm

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

Spec = UpsampleSpec | SubpixelSpec | ResizeSpec
Pixel = tuple[int, int]

EXAMPLE = UpsampleSpec(6, 4, kernel_size=4, stride=2, padding=1, residual="projection")
"""A user's measurement: one NaN in a corner of a 3x2 input reaches 36 of the 96 outputs in every build."""

SPECS: dict[str, Spec] = {
    "transposed": UpsampleSpec(3, 2, kernel_size=3, stride=2, padding=1),
    "transposed-nearest": UpsampleSpec(3, 3, kernel_size=4, stride=2, padding=1, residual="nearest"),
    "transposed-projection": EXAMPLE,
    "transposed-added-rows": UpsampleSpec(2, 3, kernel_size=3, stride=3, padding="same", residual="projection"),
    "subpixel": SubpixelSpec(3, 2, scale=2, kernel_size=3, residual="projection"),
    "resize-nearest": ResizeSpec(3, 3, scale=2, method="nearest", kernel_size=3, residual="nearest"),
    "resize-bilinear": ResizeSpec(3, 2, scale=2, method="bilinear", kernel_size=3, residual="projection"),
    "resize-bilinear-3": ResizeSpec(2, 2, scale=(3, 2), method="bilinear", kernel_size=2),
}
SIZE = (4, 3)
POISONED: dict[str, list[tuple[Pixel, float]]] = {
    "nan": [((1, 1), np.nan)],
    "+inf": [((2, 0), np.inf)],
    "-inf": [((0, 2), -np.inf)],
    "mixed": [((0, 0), np.nan), ((3, 2), np.inf), ((2, 1), -np.inf)],
}


def weights_for(spec: Spec, seed: int, nonnegative: bool = False) -> Weights:
    """Seeded weights with a nonzero bias; ``nonnegative``: absolute values, so no sum of taps cancels."""
    drawn = upsample.init_weights(spec, seed=seed)
    rng = np.random.default_rng(seed)
    bias = rng.normal(size=spec.weight_shapes()["bias"]) if spec.use_bias else None
    arrays = [None if a is None else np.asarray(a, np.float64) for a in (drawn.kernel, bias, drawn.skip)]
    if nonnegative:
        arrays = [None if a is None else np.abs(a) + 0.1 for a in arrays]
    return Weights(*arrays)


def clean_input(spec: Any, size: Pixel, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).normal(size=(batch, *size, spec.in_channels)).astype(np.float32)


def poison(x: np.ndarray, pixels: list[tuple[Pixel, float]], channel: int = 0, sample: int = 0) -> np.ndarray:
    """``x`` with ``value`` at ``(row, col)`` in one channel of one sample."""
    x = x.copy()
    for (row, col), value in pixels:
        x[sample, row, col, channel] = value
    return x


def reached(spec: Any, size: Pixel, pixel: Pixel, forward: Any = reference.forward) -> np.ndarray:
    """The output pixels (boolean ``(out_h, out_w)``) that read input ``pixel``: the response of the layer
    with nonnegative weights to a 1 there, against its response to zero."""
    x = np.zeros((1, *size, spec.in_channels))
    base = forward(x)
    x[0, pixel[0], pixel[1], :] = 1.0
    return np.any(forward(x) != base, axis=(0, 3))


def assert_same_nonfinite(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """The same NaN, +inf and -inf outputs, and the finite ones close (float32 against float64)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        got, want = test(actual), test(expected)
        assert np.array_equal(got, want), (
            f"{what}: {name} at {int(got.sum())} outputs, expected {int(want.sum())}; "
            f"differ at {np.argwhere(got != want)[:5].tolist()}"
        )
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-4, atol=1e-5, err_msg=what)


# --- the reference against the reached-set oracle ---------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_reference_propagates_to_exactly_the_pixels_an_input_reaches(name: str) -> None:
    spec = SPECS[name]
    weights = weights_for(spec, seed=1, nonnegative=True)

    def forward(x: np.ndarray) -> np.ndarray:
        return reference.forward(spec, weights, x)

    for pixel in [(0, 0), (1, 2), (3, 1)]:
        mask = reached(spec, SIZE, pixel, forward)[None, :, :, None]
        for value, test in ((np.nan, np.isnan), (np.inf, np.isposinf), (-np.inf, np.isneginf)):
            x = poison(np.ones((1, *SIZE, spec.in_channels)), [(pixel, value)])
            y = forward(x)
            expected = np.broadcast_to(mask, y.shape)
            assert np.array_equal(test(y), expected), f"{name}: {value} at {pixel}"
            assert np.isfinite(y[~expected]).all(), f"{name}: {value} at {pixel} leaks"


@pytest.mark.parametrize("name", list(SPECS))
def test_reference_vjp_sends_a_nan_gradient_to_exactly_the_inputs_read(name: str) -> None:
    """The adjoint of the forward: a NaN in ``grad_y`` at output ``o`` reaches the inputs whose reached set
    holds ``o``, and no other."""
    spec = SPECS[name]
    weights = weights_for(spec, seed=2, nonnegative=True)
    x = clean_input(spec, SIZE, batch=1)
    out_h, out_w = spec.output_size(SIZE)
    sets = {
        (r, c): reached(spec, SIZE, (r, c), lambda v: reference.forward(spec, weights, v))
        for r in range(SIZE[0])
        for c in range(SIZE[1])
    }
    for output in [(0, 0), (out_h // 2, out_w - 1), (out_h - 1, 1)]:
        grad_y = np.ones((1, out_h, out_w, spec.out_channels))
        grad_y[0, output[0], output[1], 0] = np.nan
        grad_x, _ = reference.vjp(spec, weights, x, grad_y)
        expected = np.array([[sets[r, c][output] for c in range(SIZE[1])] for r in range(SIZE[0])])
        assert np.array_equal(np.isnan(grad_x), np.broadcast_to(expected[None, :, :, None], grad_x.shape)), (
            f"{name}: NaN gradient at output {output}"
        )


def test_the_measured_example_reaches_36_of_96_outputs() -> None:
    weights = weights_for(EXAMPLE, seed=0)
    x = poison(clean_input(EXAMPLE, (3, 2), batch=1), [((0, 0), np.nan)])
    y = reference.forward(EXAMPLE, weights, x)
    assert y.size == 96 and int(np.isnan(y).sum()) == 36
    x = poison(clean_input(EXAMPLE, (3, 2), batch=1), [((0, 0), np.inf)])
    y = reference.forward(EXAMPLE, weights, x)
    assert int((~np.isfinite(y)).sum()) == 36 and np.isinf(y).any()


def _head(mode: str, norm: Any) -> HeadSpec:
    return upsample.plan(4, 12, 3, mode, norm=norm, activation="relu", final_activation="tanh", input_size=3)


HEADS = {
    "transposed-batch": _head("transposed", "batch"),
    "subpixel-group": _head("subpixel", Norm("group", groups=2)),
    "resize-batch": _head("resize", "batch"),
}
BUILD_HEADS = ["subpixel-group", "resize-batch"]
"""The heads every build runs (each build of a head costs seconds on JAX): GroupNorm, BatchNorm, and a
resize stage that propagates as ``"sums taps"`` on JAX."""


@pytest.mark.parametrize("name", [name for name in HEADS if name.endswith("batch")])
def test_head_reference_in_inference_mode_reaches_what_its_stages_reach(name: str) -> None:
    """With BatchNorm on running statistics nothing mixes pixels but the stages: the NaN outputs of the head
    are the composition of each stage's reached sets (each from its own impulse responses)."""
    spec = HEADS[name]
    size = (3, 3)
    reach = None
    for stage in spec.stages:
        stage_weights = weights_for(stage, seed=4, nonnegative=True)
        out = stage.output_size(size)
        matrix = np.array(
            [
                reached(stage, size, (r, c), lambda v, s=stage, w=stage_weights: reference.forward(s, w, v)).ravel()
                for r in range(size[0])
                for c in range(size[1])
            ]
        )
        reach = matrix if reach is None else (reach.astype(int) @ matrix.astype(int)) > 0
        size = out
    assert reach is not None
    weights = head_weights(spec, seed=3)
    x = poison(clean_input(spec, (3, 3), batch=1), [((2, 1), np.nan)])
    y = head_reference.forward(spec, weights, x, training=False)[0]
    expected = reach[2 * 3 + 1].reshape(size)
    assert np.array_equal(np.isnan(y), np.broadcast_to(expected[None, :, :, None], y.shape)), name
    assert 0 < expected.sum() < expected.size


# --- every build against the reference ----------------------------------------------------------

JAX_BUILDS = ("keras/jax", "flax-linen", "flax-nnx")
RELAXED = ("exact", "sums taps", "native bilinear", "dense")


def propagation(label: str, spec: Spec) -> str:
    """How build ``label`` propagates NaN and inf for ``spec``, where not exactly as the reference (measured):

    - ``"sums taps"``: the nearest resize-convolution on JAX runs as a transposed convolution of the summed
      kernel (``phase_split.nearest_resize_conv``), so an infinity meets ``a + b`` once where the reference
      adds ``inf * a + inf * b``: an inf where the reference has NaN from ``inf - inf``, never otherwise.
    - ``"native bilinear"``: the framework's bilinear resize also multiplies taps of weight 0 by their pixel
      (torch ``F.interpolate`` at the clamped edges and odd scales), or interpolates as ``a + (b - a) * w``
      (``tf.image.resize``: ``inf - inf``), so it has NaN where the reference has an inf or (weight 0) a
      finite value; never a finite value or an inf where the reference has NaN.
    - ``"dense"``: ``jax.image.resize`` contracts with a dense ``(out, in)`` weight matrix per axis
      (``jax.image.scale_and_translate``), so ``0 * NaN`` makes (nearly) every output of a poisoned sample
      NaN (measured: 96 of 96 outputs where the reference has 72 NaN; 141 of 144 where it has 22).
    """
    if isinstance(spec, ResizeSpec) and spec.method == "nearest" and label in JAX_BUILDS:
        return "sums taps"
    if isinstance(spec, ResizeSpec) and spec.method == "linear":
        return "dense" if label in JAX_BUILDS else "native bilinear"
    return "exact"


def assert_propagates(actual: np.ndarray, expected: np.ndarray, how: str, what: str, head: bool = False) -> None:
    """:func:`assert_same_nonfinite`, or what holds for a build that propagates ``how`` (:func:`propagation`).
    ``head``: the output went through more stages and activations (``tanh(inf)`` is finite), so for
    ``"sums taps"`` only its NaN outputs (a subset of the reference's) and the finite values are compared."""
    if how == "exact":
        return assert_same_nonfinite(actual, expected, what)
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    what = f"{what} ({how})"
    poisoned = ~np.isfinite(expected).reshape(len(expected), -1).all(axis=1)
    if how == "sums taps":
        assert not (np.isnan(actual) & ~np.isnan(expected)).any(), f"{what}: a NaN the reference does not have"
        if not head:
            assert np.array_equal(np.isfinite(actual), np.isfinite(expected)), f"{what}: non-finite set differs"
            for sign, test in (("+inf", np.isposinf), ("-inf", np.isneginf)):
                assert (test(actual) == test(expected))[~np.isnan(expected)].all(), f"{what}: {sign} differs"
    else:  # a superset of the reference's NaN; an inf only where the reference has the same inf
        assert not (np.isnan(expected) & ~np.isnan(actual)).any(), f"{what}: a NaN of the reference lost"
        assert not (np.isfinite(actual) & ~np.isfinite(expected)).any() or head, f"{what}: non-finite lost"
        for sign, test in (("+inf", np.isposinf), ("-inf", np.isneginf)):
            assert not (test(actual) & ~test(expected)).any(), f"{what}: {sign} where the reference has none"
    both = np.isfinite(actual) & np.isfinite(expected)
    np.testing.assert_allclose(actual[both], expected[both], rtol=1e-4, atol=1e-5, err_msg=what)
    assert_same_nonfinite(actual[~poisoned], expected[~poisoned], f"{what}: the clean sample")
    return None


@pytest.fixture(scope="module")
def builds() -> dict[str, Any]:
    from cases import require_backend

    for name in IN_PROCESS:
        require_backend(name)
    return IN_PROCESS


@pytest.mark.parametrize("name", list(SPECS))
def test_builds_propagate_like_the_reference(builds: dict, name: str) -> None:
    """One run per build: one sample per way of poisoning the input (``POISONED``) and a clean last sample;
    the upstream gradient has a NaN and an inf in the first sample (the input gradient of these linear
    layers does not depend on the input, so the two checks share the run)."""
    spec = SPECS[name]
    weights = weights_for(spec, seed=5)
    x = clean_input(spec, SIZE, batch=len(POISONED) + 1)
    for sample, pixels in enumerate(POISONED.values()):
        x = poison(x, pixels, sample=sample)
    y = reference.forward(spec, weights, x)
    assert not np.isfinite(y[:-1]).reshape(len(POISONED), -1).all(axis=1).any() and np.isfinite(y[-1]).all()
    out_h, out_w = y.shape[1:3]
    grad_y = np.random.default_rng(6).normal(size=y.shape)
    grad_y[0, 1, out_w - 1, 0] = np.nan
    grad_y[0, out_h - 1, 0, 1] = np.inf
    grad_x, _ = reference.vjp(spec, weights, x, grad_y)
    assert not np.isfinite(grad_x[0]).all() and np.isfinite(grad_x[1:]).all()
    for label, outcome in run_everywhere(spec, weights, x, grad_y).items():
        how = propagation(label, spec)
        for sample, poisoned in enumerate(POISONED):
            what = f"{label}, {name}, {poisoned} input: output"
            assert_propagates(outcome.y[[sample, -1]], y[[sample, -1]], how, what)
        assert_propagates(outcome.grad_x, grad_x, how, f"{label}, {name}: input gradient")


def test_builds_agree_on_the_measured_example(builds: dict) -> None:
    weights = weights_for(EXAMPLE, seed=0)
    x = poison(clean_input(EXAMPLE, (3, 2), batch=1), [((0, 0), np.nan)])
    y = reference.forward(EXAMPLE, weights, x)
    for label, outcome in run_everywhere(EXAMPLE, weights, x, np.ones_like(y)).items():
        assert_same_nonfinite(outcome.y, y, label)
        assert int(np.isnan(outcome.y).sum()) == 36, label


@pytest.mark.parametrize("name", BUILD_HEADS)
def test_heads_in_inference_mode_propagate_like_the_reference(builds: dict, name: str) -> None:
    """Inference mode (BatchNorm on running statistics; GroupNorm spreads a NaN through its group's
    statistics, in the reference as in every framework)."""
    spec = HEADS[name]
    weights = head_weights(spec, seed=3)
    x = poison(clean_input(spec, (3, 3)), [((0, 0), np.nan), ((2, 2), np.inf), ((1, 1), -np.inf)])
    y = head_reference.forward(spec, weights, x, training=False)[0]
    assert not np.isfinite(y).all() and np.isfinite(y[1]).all()
    data = [(x, np.ones_like(y))]
    for target in IN_PROCESS.values():
        outcome = crosscheck.train_local(target, spec, weights, data, crosscheck.HEAD_LEARNING_RATE)
        how = max((propagation(target.label, stage) for stage in spec.stages), key=RELAXED.index)
        assert_propagates(outcome.y_eval, y, how, f"{target.label}, {name}: inference output", head=True)
