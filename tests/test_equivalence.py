"""Cross-framework equivalence: one spec and one set of weights give the same numbers everywhere.

For each case every build in this process runs forward and backward with one shared upstream gradient,
through the same runners ``upsample check`` uses. Outputs, input gradients and weight gradients
(converted back to the canonical layout) are compared with the float64 NumPy reference and with each
other. A failure prints the spec as JSON so it can be replayed with ``upsample check SPEC.json``. Every
kind is covered: the transposed convolution (sweep and hypothesis cases), sub-pixel and
resize-convolution (their sweep and hypothesis cases), each kind with a blur after it, and whole heads (forward
in both modes, gradients, three SGD steps with running statistics).

One rule for layers and heads: tests/test_keras_backends.py runs this module once per Keras backend
(``KERAS_BACKEND`` is fixed per process), and each framework's builds run in exactly one of those
children (``BUILDS``): Keras in each (one backend each), torch in the Keras-on-torch child and Flax linen
and NNX in the Keras-on-JAX child, where that framework is loaded anyway. Every build is compared with
the reference, and every pair of builds in the same process with each other (Keras on TensorFlow, alone
in its child, meets the others through the reference). Running torch and Flax in all three children
tripled their work for no new comparison.

``UPSAMPLE_EQUIVALENCE_EXAMPLES`` sets the number of hypothesis cases (default 200).
"""

from __future__ import annotations

import importlib
import itertools
import os

import blocks_cases
import blur_cases
import group_cases
import kind_cases
import numpy as np
import pytest
import rank_cases
from cases import ATOL, assert_close, cases, random_input, random_weights, require_backend, sweep, sweep_ids
from head_cases import MODES, head_weights
from hypothesis import HealthCheck, given, settings

import upsample
from upsample import UpsampleSpec, Weights, crosscheck, reference
from upsample.crosscheck import TARGETS, HeadOutcome, Outcome, Target
from upsample.head import HeadSpec, Norm

KERAS_BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
BUILDS = {"tensorflow": ("keras",), "jax": ("keras", "flax", "nnx"), "torch": ("keras", "torch")}
"""The builds (backend names for ``require_backend``) each Keras backend's child runs, layers and heads alike."""
LABELS = {"torch": "torch", "flax": "flax-linen", "nnx": "flax-nnx"}


def build_target(name: str, keras_backend: str) -> Target:
    """The ``crosscheck.TARGETS`` entry of build ``name`` (``"keras"``: Keras on ``keras_backend``)."""
    if name == "keras":
        return next(t for t in TARGETS if t.keras_backend == keras_backend)
    return next(t for t in TARGETS if t.label == LABELS[name])


IN_PROCESS = {name: build_target(name, KERAS_BACKEND) for name in BUILDS[KERAS_BACKEND]}
EXAMPLES = int(os.environ.get("UPSAMPLE_EQUIVALENCE_EXAMPLES", "200"))
KIND_EXAMPLES = max(1, EXAMPLES // 8)


@pytest.fixture(scope="module")
def targets() -> dict[str, object]:
    for name in IN_PROCESS:
        require_backend(name)
    return IN_PROCESS


def test_each_build_runs_in_exactly_one_child() -> None:
    """Across the three children every Keras backend runs once and every other build (torch, Flax linen,
    Flax NNX: ``crosscheck.TARGETS``) once, so none is missed and none repeats another child's work."""
    labels = [build_target(name, backend).label for backend, names in BUILDS.items() for name in names]
    assert sorted(labels) == sorted(t.label for t in TARGETS)


def run_everywhere(spec: UpsampleSpec, weights: Weights, x: np.ndarray, grad_y: np.ndarray) -> dict[str, Outcome]:
    outcomes = {}
    for target in IN_PROCESS.values():
        runner = importlib.import_module(f"upsample.runners.{target.runner}")
        outcomes[target.label] = runner.run(spec, weights, x, grad_y, repeats=0, **target.options)
    return outcomes


def assert_outcomes_close(first: Outcome, second: Outcome, what: str, spec: UpsampleSpec, atol: float = ATOL) -> None:
    assert_close(first.y, second.y, f"{what}: output", spec, atol=atol)
    assert_close(first.grad_x, second.grad_x, f"{what}: input gradient", spec, atol=atol)
    for name, mine, theirs in zip(
        ("kernel", "bias", "skip"), first.grad_weights.arrays(), second.grad_weights.arrays(), strict=True
    ):
        assert (mine is None) == (theirs is None), f"{what}: {name} gradient present in one only; {spec.to_json()}"
        if mine is not None:
            assert_close(mine, theirs, f"{what}: {name} gradient", spec, atol=atol)


def check_case(
    spec: UpsampleSpec, size: tuple[int, int], batch: int, seed: int, weights: Weights | None = None
) -> None:
    weights = random_weights(spec, seed) if weights is None else weights
    x = random_input(spec, batch, size, seed)
    y = reference.forward(spec, weights, x)
    grad_y = np.random.default_rng(seed + 2).normal(size=y.shape).astype(np.float32)
    expected = Outcome(y, *reference.vjp(spec, weights, x, grad_y), seconds=0.0)
    outcomes = run_everywhere(spec, weights, x, grad_y)
    for label, outcome in outcomes.items():
        assert_outcomes_close(outcome, expected, f"{label} vs reference", spec)
    # Two float32 results may each sit up to the tolerance from the reference, so pairs get twice the atol.
    for (label_a, a), (label_b, b) in itertools.combinations(outcomes.items(), 2):
        assert_outcomes_close(a, b, f"{label_a} vs {label_b}", spec, atol=2 * ATOL)


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(case=cases())
def test_drawn_cases_agree_everywhere(targets: dict, case: tuple) -> None:
    check_case(*case)


@pytest.mark.parametrize(("spec", "size"), sweep()[::3], ids=sweep_ids()[::3])
def test_sweep_agrees_everywhere(targets: dict, spec: UpsampleSpec, size: tuple[int, int]) -> None:
    check_case(spec, size, 2, seed=17)


@pytest.mark.parametrize(
    "spec", kind_cases.SWEEP, ids=[f"{type(spec).__name__}-{i}" for i, spec in enumerate(kind_cases.SWEEP)]
)
def test_kinds_sweep_agrees_everywhere(targets: dict, spec: kind_cases.Spec) -> None:
    for seed, size in enumerate(kind_cases.SIZES):
        check_case(spec, size, 2, seed, kind_cases.weights(spec, seed))  # type: ignore[arg-type]


@settings(
    max_examples=KIND_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(case=kind_cases.random_cases())
def test_kinds_drawn_cases_agree_everywhere(targets: dict, case: tuple) -> None:
    spec, size, seed = case
    check_case(spec, size, 2, seed, kind_cases.weights(spec, seed))


# --- heads ---------------------------------------------------------------------------------------


def _head(mode: str, norm: str) -> HeadSpec:
    return upsample.plan(
        8,
        32,
        3,
        mode,
        norm=Norm("group", groups=2) if norm == "group" else norm,
        activation="relu",
        final_activation="tanh",
    )


HEADS = {f"{mode}-{norm}": _head(mode, norm) for mode in MODES for norm in ("batch", "group")}


def assert_heads_close(first: HeadOutcome, second: HeadOutcome, what: str, spec: HeadSpec, slack: float) -> None:
    """Everything a head check compares, ``slack`` times the reference tolerance (2 for a pair of builds)."""
    atol = crosscheck.ATOL * slack
    for name in ("y", "y_eval"):
        np.testing.assert_allclose(getattr(first, name), getattr(second, name), rtol=1e-4, atol=atol, err_msg=what)
    input_atol = slack * crosscheck.head_input_atol(spec)
    np.testing.assert_allclose(first.grad_x, second.grad_x, rtol=1e-4, atol=input_atol, err_msg=f"{what}: grad_x")
    assert set(first.grads) == set(second.grads), what
    for name, array in second.grads.items():
        tolerance = slack * crosscheck.head_gradient_atol(spec, name, len(second.y))
        np.testing.assert_allclose(first.grads[name], array, rtol=1e-4, atol=tolerance, err_msg=f"{what}: {name}")
    assert set(first.trained) == set(second.trained), what
    for name, array in second.trained.items():
        np.testing.assert_allclose(first.trained[name], array, rtol=1e-4, atol=atol, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("name", list(HEADS))
def test_heads_agree_everywhere(targets: dict, name: str) -> None:
    check_head(HEADS[name], name)


def check_head(spec: HeadSpec, name: str) -> None:
    """Every build of ``spec`` against the reference and each pair of builds: training-mode forward and
    gradients, inference mode, and the weights and running statistics after SGD steps."""
    weights = head_weights(spec, seed=3)
    data = crosscheck.head_data(spec, seed=5)
    expected = crosscheck.expected_head(spec, weights, data, crosscheck.HEAD_LEARNING_RATE)
    outcomes = {
        target.label: crosscheck.train_local(target, spec, weights, data, crosscheck.HEAD_LEARNING_RATE)
        for target in IN_PROCESS.values()
    }
    for label, outcome in outcomes.items():
        assert_heads_close(outcome, expected, f"{label} vs reference; {name}", spec, 1.0)
    for (label_a, a), (label_b, b) in itertools.combinations(outcomes.items(), 2):
        assert_heads_close(a, b, f"{label_a} vs {label_b}; {name}", spec, 2.0)


# --- the field's blocks ---------------------------------------------------------------------------


def block_outcome(target: Target, spec: object, weights: object, x: np.ndarray, grad_y: np.ndarray) -> tuple:
    """``target``'s output and input gradient for ``spec`` (a layer or a head: inference mode) on ``x``."""
    if isinstance(spec, HeadSpec):
        outcome = crosscheck.train_local(target, spec, weights, [(x, grad_y)], crosscheck.HEAD_LEARNING_RATE)  # type: ignore[arg-type]
        return outcome.y_eval, outcome.grad_x
    runner = importlib.import_module(f"upsample.runners.{target.runner}")
    result = runner.run(spec, weights, x, grad_y, repeats=0, **target.options)
    return result.y, result.grad_x


@pytest.mark.parametrize("case", blocks_cases.CASES, ids=blocks_cases.IDS)
def test_field_blocks_agree_everywhere(targets: dict, case: blocks_cases.BlockCase) -> None:
    """Each MONAI, diffusers and fastai block and each normalised convolution (issue 27), read by torch's
    ``from_native``, gives the block's own output and input gradient (torch autograd on the block) in every build."""
    require_backend("torch")  # the blocks are torch modules, converted in every child
    import torch

    from upsample.backends import torch as ut

    module = case.make()
    rng = np.random.default_rng(11)
    x = rng.normal(size=case.input_shape).astype(np.float32)
    inputs = torch.from_numpy(x).requires_grad_(True)
    y = module(inputs)
    grad_y = rng.normal(size=tuple(y.shape)).astype(np.float32)
    y.backward(torch.from_numpy(grad_y))
    assert inputs.grad is not None
    spec, weights = ut.from_native(module, in_channels=case.in_channels)
    last = lambda array: np.moveaxis(np.asarray(array), 1, -1)  # noqa: E731
    for label, target in IN_PROCESS.items():
        got_y, got_grad_x = block_outcome(target, spec, weights, last(x), last(grad_y))
        np.testing.assert_allclose(got_y, last(y.detach().numpy()), rtol=1e-4, atol=1e-5, err_msg=f"{label}: output")
        np.testing.assert_allclose(got_grad_x, last(inputs.grad.numpy()), rtol=1e-4, atol=1e-5, err_msg=label)


# --- ranks 1 and 3 -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", blur_cases.SPECS, ids=blur_cases.IDS)
def test_blurred_layers_agree_everywhere(targets: dict, spec: kind_cases.Spec) -> None:
    """Each kind and rank with a blur after it (issue 27): fastai's, MONAI's and FIR presets and custom taps."""
    for seed, size in enumerate(blur_cases.SIZES[spec.spatial_dims]):
        check_case(spec, size, 2, seed, kind_cases.weights(spec, seed))  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", rank_cases.SPECS, ids=rank_cases.IDS)
def test_ranks_1_and_3_agree_everywhere(targets: dict, spec: kind_cases.Spec) -> None:
    """Every kind at 1 and 3 spatial axes, 1-pixel (the matmul path) and larger inputs: every build against the
    reference and each pair of builds, forward and gradients."""
    for seed, size in enumerate(rank_cases.SIZES[spec.spatial_dims]):
        check_case(spec, size, 2, seed, kind_cases.weights(spec, seed))  # type: ignore[arg-type]


RANK_HEADS = {
    "1d-transposed-batch": upsample.plan(8, (32,), 3, "transposed", norm="batch", final_activation="tanh"),
    "1d-subpixel-group": upsample.plan(8, 16, 3, "subpixel", norm=Norm("group", groups=2), spatial_dims=1),
    "3d-transposed-group": upsample.plan(8, (8, 8, 8), 3, "transposed", norm=Norm("group", groups=2)),
    "3d-resize-batch": upsample.plan(4, 8, 2, "resize", norm="batch", input_size=(2, 2, 2), final_activation="tanh"),
}


@pytest.mark.parametrize("name", list(RANK_HEADS))
def test_heads_of_ranks_1_and_3_agree_everywhere(targets: dict, name: str) -> None:
    """A planned head at 1 and 3 spatial axes: training-mode forward and gradients, inference mode, and the
    weights and running statistics after SGD steps, in every build."""
    check_head(RANK_HEADS[name], name)


# --- groups and dilation ---------------------------------------------------------------------------

GROUPED = [*group_cases.SAMPLED, *group_cases.FIELD[1:], *group_cases.CONV]
"""The sampled sweep, the field's layers (FCN's 64-channel depthwise stage is left to the per-build tests) and
the conv kinds."""


@pytest.mark.parametrize("spec", GROUPED, ids=[group_cases.spec_id(spec) for spec in GROUPED])
def test_groups_and_dilation_agree_everywhere(targets: dict, spec: kind_cases.Spec) -> None:
    """Grouped and dilated layers of every kind, 1-pixel and larger inputs: every build against the reference
    and each pair of builds, forward and gradients."""
    for seed, size in enumerate(group_cases.SIZES[spec.spatial_dims]):
        check_case(spec, size, 2, seed, kind_cases.weights(spec, seed))  # type: ignore[arg-type]


GROUP_HEADS = {
    "depthwise-bilinear-then-grouped-subpixel": HeadSpec(
        [
            UpsampleSpec(8, 8, kernel_size=4, stride=2, padding=1, groups=8),
            upsample.SubpixelSpec(8, 4, scale=2, kernel_size=3, groups=2, dilation=2),
        ],
        norm="batch",
        input_size=2,
    ),
    "3d-dilated-then-grouped-resize": HeadSpec(
        [
            UpsampleSpec(4, 4, kernel_size=3, stride=2, padding=2, output_padding=1, dilation=2, spatial_dims=3),
            upsample.ResizeSpec(4, 2, scale=2, kernel_size=3, groups=2, dilation=(1, 2, 1)),
        ],
        norm=Norm("group", groups=2),
        final_activation="tanh",
    ),
}


@pytest.mark.parametrize("name", list(GROUP_HEADS))
def test_heads_with_grouped_and_dilated_stages_agree_everywhere(targets: dict, name: str) -> None:
    """Heads whose stages are grouped and dilated: training-mode forward and gradients, inference mode, and the
    weights and running statistics after SGD steps, in every build."""
    check_head(GROUP_HEADS[name], name)
