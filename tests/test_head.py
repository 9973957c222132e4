"""Heads (issue 16), framework-free: HeadSpec validation and JSON, ``plan``, weights files, and the NumPy
reference checked against float64 finite differences and against the textbook statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import upsample
from upsample import head_reference
from upsample.conv_specs import ResizeSpec, SubpixelSpec
from upsample.head import Activation, HeadSpec, Norm
from upsample.head_weights import HeadWeights, NormWeights, load_head, save_head
from upsample.spec import UpsampleSpec
from upsample.weights import WeightsFileError


def small_head(norm: object = "batch", mode: str = "transposed", **kwargs: object) -> HeadSpec:
    return upsample.plan(4, 8, out_channels=2, mode=mode, norm=norm, **kwargs)  # type: ignore[arg-type]


def random_weights(spec: HeadSpec, seed: int) -> HeadWeights:
    """Seeded weights with non-trivial norm parameters and running statistics."""
    rng = np.random.default_rng(seed)
    weights = upsample.init_weights(spec, seed=seed)
    norms = tuple(
        None
        if n is None
        else NormWeights(
            *(
                None if a is None else rng.uniform(0.5, 1.5, a.shape) if k in (0, 3) else rng.normal(size=a.shape)
                for k, a in enumerate(n.arrays())
            )  # fmt: skip
        )
        for n in weights.norms
    )
    stages = tuple(
        upsample.Weights(*(None if a is None else a + rng.normal(0, 0.1, a.shape) for a in w.arrays()))
        for w in weights.stages
    )
    return HeadWeights(stages, norms)


# --- spec -----------------------------------------------------------------------------------------


def test_validation_names_stage_and_argument() -> None:
    a, b = UpsampleSpec.for_size(4, 4, out_channels=6), UpsampleSpec(5, 2, 4, 2, 1)
    with pytest.raises(ValueError, match=r"stages\[1\]\.in_channels is 5 but stages\[0\]\.out_channels is 6"):
        HeadSpec([a, b])
    with pytest.raises(ValueError, match=r"groups=4 does not divide stages\[0\]\.out_channels=6"):
        HeadSpec([a, UpsampleSpec(6, 2, 4, 2, 1)], norm=Norm("group", groups=4))
    with pytest.raises(ValueError, match=r"stages\[1\] cannot take its 4x4 input"):
        HeadSpec([a, UpsampleSpec(6, 2, 1, 1, padding=((2, 2), (2, 2)))])
    with pytest.raises(TypeError, match=r"stages\[0\] must be an upsample spec"):
        HeadSpec([a.to_dict()])
    with pytest.raises(ValueError, match="activation must be one of"):
        HeadSpec([a], activation="mish")
    with pytest.raises(ValueError, match="norm momentum must be in"):
        HeadSpec([a], norm=Norm("batch", momentum=1.5))
    with pytest.raises(TypeError, match="stages must be a non-empty sequence"):
        HeadSpec([])


def test_defaults_are_explicit() -> None:
    spec = HeadSpec([UpsampleSpec.for_size(4, 4)], norm="batch", activation="gelu", final_activation="leaky_relu")
    assert spec.norm == Norm("batch", epsilon=1e-5, momentum=0.1, groups=32)
    assert spec.activation == Activation("gelu", approximate=False)
    assert spec.final_activation is not None and spec.final_activation.slope == 0.01


@pytest.mark.parametrize("mode", ["transposed", "subpixel", "resize"])
def test_json_round_trip_and_protocol(mode: str) -> None:
    spec = upsample.plan(512, 64, out_channels=3, mode=mode, norm="batch", activation="relu", final_activation="tanh")
    assert upsample.load_spec(spec.to_json()) == spec
    assert HeadSpec.from_json(spec.to_json()) == spec
    assert spec.output_size() == (64, 64) and spec.diagnose().ok
    assert [s.in_channels for s in spec.stages] == [512, 512, 256, 128, 64]
    assert spec.stages[-1].out_channels == 3
    norms = sum(2 * s.out_channels for s in spec.stages[:-1])
    assert spec.num_params == sum(s.num_params for s in spec.stages) + norms
    assert spec.flops() > sum(s.flops(size) for s, size in zip(spec.stages, spec.stage_sizes(), strict=False))


def test_diagnose_reports_every_stage() -> None:
    bad = HeadSpec([UpsampleSpec.for_size(4, 4), UpsampleSpec(4, 4, kernel_size=3, stride=2, padding=1)])
    report = bad.diagnose()
    assert len(report.stages) == 2 and report.stages[0].ok and not report.stages[1].ok and not report.ok
    assert "stage 1: " in report.verdict


# --- plan -----------------------------------------------------------------------------------------


def test_plan_is_dcgan_for_64() -> None:
    spec = upsample.plan(512, 64, out_channels=3, norm="batch", final_activation="tanh")
    first, *rest = spec.stages
    assert (first.kernel_size, first.stride, first.crops) == ((4, 4), (1, 1), ((0, 0), (0, 0)))
    assert all((s.kernel_size, s.stride, s.crops) == ((4, 4), (2, 2), ((1, 1), (1, 1))) for s in rest)


@pytest.mark.parametrize(
    ("size", "input_size", "sizes"),
    [
        (48, 1, [1, 6, 12, 24, 48]),
        (2, 1, [1, 2]),
        (24, 2, [2, 4, 8, 24]),
        (10, 2, [2, 10]),
        ((8, 16), 1, [1, 4, 8]),
    ],
)
def test_plan_sizes(size: object, input_size: int, sizes: list[int]) -> None:
    spec = upsample.plan(16, size, mode="subpixel", input_size=input_size)  # type: ignore[arg-type]
    got = spec.stage_sizes()
    assert [s[0] for s in got] == sizes
    assert spec.diagnose().ok or input_size == 1 and got[1] == (2, 2)


def test_plan_errors_are_readable() -> None:
    with pytest.raises(ValueError, match="size 7 along height is not a multiple"):
        upsample.plan(8, 7, input_size=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        upsample.plan(8, 8, mode="deconv")
    with pytest.raises(ValueError, match="channels lists 2 stages; this head from 1x1 to 16x16 has 3"):
        upsample.plan(8, 16, channels=[4, 2])
    with pytest.raises(ValueError, match="nothing to upsample"):
        upsample.plan(8, 1)


def test_plan_channels_and_kinds() -> None:
    spec = upsample.plan(8, 16, mode="resize", channels=[6, 5, 3])
    assert [type(s) for s in spec.stages] == [UpsampleSpec, ResizeSpec, ResizeSpec]
    assert [s.out_channels for s in spec.stages] == [6, 5, 3]
    assert isinstance(upsample.plan(8, 8, mode="subpixel").stages[1], SubpixelSpec)


# --- weights ----------------------------------------------------------------------------------------


def test_save_and_load_head(tmp_path: Path) -> None:
    spec = small_head()
    weights = random_weights(spec, 3)
    save_head(tmp_path / "head.safetensors", spec, weights)
    loaded_spec, loaded = load_head(tmp_path / "head.safetensors")
    assert loaded_spec == spec
    for name, array in weights.flat().items():
        np.testing.assert_array_equal(loaded.flat()[name], array)
    assert set(loaded.flat()) == set(weights.flat())
    upsample.save_weights(tmp_path / "one.safetensors", spec.stages[0], weights.stages[0])
    with pytest.raises(WeightsFileError, match="single UpsampleSpec"):
        load_head(tmp_path / "one.safetensors")


def test_weights_are_checked() -> None:
    spec = small_head()
    weights = upsample.init_weights(spec, seed=0)
    with pytest.raises(ValueError, match=r"weights.norms\[0\].scale has shape"):
        HeadWeights(weights.stages, (NormWeights(np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)), None)).check(spec)
    group = small_head(Norm("group", groups=2))
    assert upsample.init_weights(group, seed=0).norms[0].running_mean is None  # type: ignore[union-attr]


# --- reference ----------------------------------------------------------------------------------------

HEADS = [
    ("batch-relu", dict(norm="batch", activation="relu", final_activation="tanh")),
    ("group-gelu", dict(norm=Norm("group", groups=2, epsilon=1e-3), activation="gelu", final_activation="sigmoid")),
    ("batch-gelu-tanh", dict(norm="batch", activation=Activation("gelu", approximate=True), mode="subpixel")),
    ("leaky-resize", dict(norm=None, activation=Activation("leaky_relu", slope=0.2), mode="resize")),
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("name", "kwargs"), HEADS, ids=[h[0] for h in HEADS])
def test_reference_vjp_matches_finite_differences(name: str, kwargs: dict, training: bool) -> None:
    spec = small_head(**kwargs)
    weights = random_weights(spec, 1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 1, 1, 4))
    grad_y = rng.normal(size=(2, 8, 8, 2))
    grad_x, grads = head_reference.vjp(spec, weights, x, grad_y, training=training)

    def loss(xs: np.ndarray, ws: HeadWeights) -> float:
        return float((head_reference.forward(spec, ws, xs, training=training)[0] * grad_y).sum())

    eps = 1e-6
    direction = rng.normal(size=x.shape)
    numeric = (loss(x + eps * direction, weights) - loss(x - eps * direction, weights)) / (2 * eps)
    np.testing.assert_allclose(numeric, (grad_x * direction).sum(), rtol=1e-5, atol=1e-7)
    flat, grad_flat = weights.flat(), grads.flat()
    for key in [k for k in flat if "running" not in k]:
        step = rng.normal(size=flat[key].shape)
        plus = HeadWeights.from_flat(spec, {**flat, key: flat[key] + eps * step})
        minus = HeadWeights.from_flat(spec, {**flat, key: flat[key] - eps * step})
        numeric = (loss(x, plus) - loss(x, minus)) / (2 * eps)
        np.testing.assert_allclose(numeric, (grad_flat[key] * step).sum(), rtol=1e-5, atol=1e-7, err_msg=key)


def test_reference_batch_statistics_are_torch_convention() -> None:
    """Running mean/var after one step: ``0.9 * old + 0.1 * batch`` with the unbiased batch variance."""
    spec = small_head()
    weights = random_weights(spec, 4)
    x = np.random.default_rng(5).normal(size=(3, 1, 1, 4))
    _, updated = head_reference.forward(spec, weights, x, training=True)
    z = upsample.reference.forward(spec.stages[0], weights.stages[0], x)
    old = weights.norms[0]
    new = updated.norms[0]
    assert old is not None and new is not None
    np.testing.assert_allclose(new.running_mean, 0.9 * old.running_mean + 0.1 * z.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(new.running_var, 0.9 * old.running_var + 0.1 * z.var(axis=(0, 1, 2), ddof=1))
    _, same = head_reference.forward(spec, weights, x, training=False)
    for key, array in weights.flat().items():
        np.testing.assert_array_equal(same.flat()[key], array)


def test_training_batch_norm_on_one_value_per_channel_is_refused() -> None:
    spec = HeadSpec([UpsampleSpec(4, 4), UpsampleSpec.for_size(4, 2)], norm="batch")
    weights = upsample.init_weights(spec, seed=0)
    with pytest.raises(ValueError, match="more than one value per channel"):
        head_reference.forward(spec, weights, np.ones((1, 1, 1, 4)), training=True)
    head_reference.forward(spec, weights, np.ones((1, 1, 1, 4)), training=False)


def test_table_lists_every_stage() -> None:
    spec = upsample.plan(512, 64, out_channels=3, mode="resize", norm="batch", final_activation="tanh")
    lines = spec.table().splitlines()
    assert len(lines) == 1 + len(spec.stages) + 1
    assert lines[1].split()[:6] == ["0", "1x1", "->", "4x4", "512", "->"]
    assert "ResizeSpec" in lines[2] and "batchnorm + relu" in lines[2] and lines[-2].split()[-3] == "tanh"
    assert lines[-1].startswith(f"total: {spec.num_params:,} parameters")


def test_init_and_build_errors_name_the_argument() -> None:
    spec = small_head()
    with pytest.raises(ValueError, match=r"scheme='bilinear' fits no stage .*stages\[0\] UpsampleSpec 4 -> 2"):
        upsample.init_weights(HeadSpec([UpsampleSpec.for_size(4, 4, out_channels=2)]), scheme="bilinear")
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        upsample.init_weights(spec, seed=True)
    with pytest.raises(TypeError, match="weights must be an upsample.HeadWeights, got Weights"):
        spec.build("torch", weights=upsample.init_weights(spec.stages[0]))
    with pytest.raises(ValueError, match="backend must be one of"):
        spec.build("mxnet")


@pytest.mark.parametrize("mode", ["transposed", "subpixel", "resize"])
def test_plan_group_norm_chooses_groups_that_divide_every_normed_stage(mode: str) -> None:
    """``norm="group"`` without a count: the largest count up to 32 dividing every normalised stage's channels
    (32 divides neither 16 nor 8 here); explicit groups that do not divide are refused, naming the stages."""
    for norm in ("group", {"kind": "group", "epsilon": 1e-3}):
        head = upsample.plan(32, 32, out_channels=3, mode=mode, norm=norm)
        normed = [stage.out_channels for i, stage in enumerate(head.stages) if head.normed(i)]
        assert head.norm is not None and normed == [32, 16, 8]
        assert all(c % head.norm.groups == 0 for c in normed)
        assert not [g for g in range(head.norm.groups + 1, 33) if all(c % g == 0 for c in normed)]
    assert head.norm.epsilon == 1e-3
    assert upsample.plan(64, 16, mode=mode, norm="group").norm == Norm("group", groups=32)  # 64, 32 normed
    for explicit in (Norm("group"), {"kind": "group", "groups": 32}):
        with pytest.raises(ValueError, match=r"groups=32 does not divide .*stages\[1\] \(16\), stages\[2\] \(8\)"):
            upsample.plan(32, 32, out_channels=3, mode=mode, norm=explicit)
    assert upsample.plan(32, 32, out_channels=3, mode=mode, norm=Norm("group", groups=4)).norm.groups == 4


def test_norm_and_activation_are_exported_lazily() -> None:
    """``upsample.Norm`` and ``upsample.Activation`` as the docs write them; ``import upsample`` still loads
    neither NumPy nor a framework."""
    import subprocess
    import sys

    assert upsample.Norm is Norm and upsample.Activation is Activation
    code = "import sys, upsample; assert {'Norm', 'Activation'} <= set(dir(upsample)); print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
    head = upsample.plan(8, 8, norm=upsample.Norm("batch", momentum=0.2), activation=upsample.Activation("gelu"))
    assert head.norm == Norm("batch", momentum=0.2) and head.activation == Activation("gelu")


def test_plan_method_and_use_bias() -> None:
    """``method`` reaches every resize stage; ``use_bias=False`` drops every stage's bias."""
    head = upsample.plan(8, 16, mode="resize", method="bilinear")
    resize = head.stages[1:]
    bilinear = [ResizeSpec(stage.in_channels, stage.out_channels, method="bilinear") for stage in resize]
    assert resize and list(resize) == bilinear
    assert all(stage.method == "nearest" for stage in upsample.plan(8, 16, mode="resize").stages[1:])
    with pytest.raises(ValueError, match="method applies to mode='resize' only"):
        upsample.plan(8, 16, method="bilinear")
    for mode in ("transposed", "subpixel", "resize"):
        biased, unbiased = upsample.plan(8, 16, mode=mode), upsample.plan(8, 16, mode=mode, use_bias=False)
        assert all(stage.use_bias for stage in biased.stages) and not any(s.use_bias for s in unbiased.stages)
        biases = sum(w.bias.size for w in upsample.init_weights(biased).stages)  # sub-pixel: one per conv channel
        assert biased.num_params() - unbiased.num_params() == biases > 0
        assert all(w.bias is None for w in upsample.init_weights(unbiased).stages)
    with pytest.raises(TypeError, match="use_bias must be a bool, got 'no'"):
        upsample.plan(8, 16, use_bias="no")  # type: ignore[arg-type]


def test_init_scheme_goes_to_the_stages_it_fits() -> None:
    """``icnr`` on a sub-pixel head: its dense transposed first stage gets he_uniform, each sub-pixel stage an ICNR
    kernel (the ``r_h * r_w`` phases of every output channel start equal); a scheme that fits no stage raises."""
    from upsample.head_weights import stage_schemes

    head = upsample.plan(16, 16, 3, mode="subpixel")
    assert stage_schemes(head, "icnr") == ("he_uniform", "icnr", "icnr")
    weights = upsample.init_weights(head, scheme="icnr", seed=5)
    first = upsample.init_weights(head.stages[0], seed=5)
    np.testing.assert_array_equal(weights.stages[0].kernel, first.kernel)
    for stage, stage_weights in zip(head.stages[1:], weights.stages[1:], strict=True):
        kernel = stage_weights.kernel.reshape(*stage_weights.kernel.shape[:3], stage.out_channels, 4)
        assert np.ptp(kernel, axis=-1).max() == 0 and np.abs(kernel).max() > 0
    plain = upsample.init_weights(head, seed=5).stages[1].kernel.reshape(3, 3, 16, 8, 4)
    assert np.ptp(plain, axis=-1).max() > 0  # he_uniform's phases differ: the check above can fail
    with pytest.raises(ValueError, match=r"scheme='icnr' fits no stage .*stages\[0\] UpsampleSpec"):
        upsample.init_weights(upsample.plan(16, 16, 3), scheme="icnr")
    bilinear = upsample.plan(4, 16, 2)  # 4 -> 4, 4 -> 2, 2 -> 2 channels
    assert stage_schemes(bilinear, "bilinear") == ("bilinear", "he_uniform", "bilinear")


def test_heads_written_as_stacks_still_load_and_the_old_names_import() -> None:
    """Before heads were called heads in code their JSON said ``"kind": "stack"`` and the classes were
    ``StackSpec``/``StackWeights`` in ``upsample.stack``: files and imports of that release keep working."""
    import importlib

    spec = upsample.plan(8, 8, out_channels=2, norm="batch")
    data = spec.to_dict()
    assert data["kind"] == "head"
    assert upsample.load_spec({**data, "kind": "stack"}) == spec
    assert upsample.StackSpec is upsample.HeadSpec and upsample.StackWeights is upsample.HeadWeights
    assert importlib.import_module("upsample.stack").StackSpec is upsample.HeadSpec
    assert importlib.import_module("upsample.stack_weights").StackWeights is upsample.HeadWeights
    for backend in ("torch", "flax"):  # Keras's module loads Keras: the per-backend children import it
        if backend in upsample.backends.available():
            old = importlib.import_module(f"upsample.backends.{backend}.stack")
            assert old.Head is importlib.import_module(f"upsample.backends.{backend}.head").Head
