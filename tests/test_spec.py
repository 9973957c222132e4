"""UpsampleSpec: normalisation, the seed's facts, for_size, JSON and validation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from cases import specs
from hypothesis import given, settings

from upsample import UpsampleSpec


def test_torch_trap_gives_1x1_from_1x1() -> None:
    spec = UpsampleSpec(64, 64, kernel_size=3, stride=32, padding=1)
    assert spec.output_size((1, 1)) == (1, 1)
    report = spec.diagnose(1)
    assert report.idle_strides == ("height", "width") and report.not_upsampling
    assert not report.ok  # issue 14: the seed's own trap was reported as ok
    assert not report.verdict.startswith("ok")
    assert "UpsampleSpec.for_size(64, 32)" in report.verdict  # what the user probably meant
    meant = UpsampleSpec.for_size(64, 32)
    assert meant.output_size(1) == (32, 32) and meant.diagnose(1).ok


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (UpsampleSpec(4, kernel_size=1), 1),  # 1x1 -> 1x1
        (UpsampleSpec(4, kernel_size=3, padding=1), 5),  # 5x5 -> 5x5
        (UpsampleSpec(4, kernel_size=4, stride=2, padding=1), 1),  # DCGAN's stage on 1x1: 2x2, stride idle
    ],
)
def test_layers_that_do_not_upsample_are_not_ok(spec: UpsampleSpec, size: int) -> None:
    report = spec.diagnose(size)
    assert not report.ok and not report.verdict.startswith("ok"), report.verdict


def test_replace_and_dataclasses_replace() -> None:
    import dataclasses

    spec = UpsampleSpec(4, 8, kernel_size=3, stride=2, padding="same", residual="projection")
    assert spec.replace(out_channels=4) == UpsampleSpec(
        4, 4, kernel_size=3, stride=2, padding="same", residual="projection"
    )
    assert dataclasses.replace(spec, use_bias=False).use_bias is False
    assert spec.replace(padding=0).crops == ((0, 0), (0, 0)) == spec.replace(crops=((0, 0), (0, 0))).crops
    with pytest.raises(ValueError, match="give crops or padding"):
        dataclasses.replace(spec, padding=0)  # not silently ignored


def test_keras_trap_gives_16x16_with_247_dead() -> None:
    spec = UpsampleSpec(64, 64, kernel_size=3, stride=16, padding="same")
    assert spec.output_size(1) == (16, 16)
    report = spec.diagnose(1)
    assert (report.live, report.dead) == (9, 247)
    coverage = spec.coverage(1)
    assert coverage[:3, :3].min() == 1 and coverage.sum() == 9  # the live pixels are the top-left 3x3


def test_equivalent_arguments_compare_equal() -> None:
    torch_style = UpsampleSpec(8, kernel_size=4, stride=2, padding=1, output_padding=0)
    crops = UpsampleSpec(8, 8, kernel_size=(4, 4), stride=(2, 2), padding=((1, 1), (1, 1)))
    keras_same = UpsampleSpec(8, kernel_size=4, stride=2, padding="same")
    assert torch_style == crops == keras_same
    assert len({torch_style, crops, keras_same}) == 1
    assert UpsampleSpec(8, kernel_size=4, stride=2, padding=1, output_padding=1) == UpsampleSpec(
        8, kernel_size=4, stride=2, padding=((1, 0), (1, 0))
    )
    assert torch_style != UpsampleSpec(8, kernel_size=4, stride=2, padding=1, residual="nearest")


def test_same_and_valid_differ_between_output_padding_none_and_zero() -> None:
    # As in Keras: output_padding=None picks the mode's default size; 0 is an explicit value.
    assert UpsampleSpec(1, kernel_size=2, stride=3, padding="valid").output_size(1) == (3, 3)
    assert UpsampleSpec(1, kernel_size=2, stride=3, padding="valid", output_padding=0).output_size(1) == (2, 2)


def test_spec_is_frozen() -> None:
    spec = UpsampleSpec(4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.in_channels = 5  # type: ignore[misc]


@pytest.mark.parametrize("input_size", range(1, 9))
@pytest.mark.parametrize("size", range(1, 65))
def test_for_size(input_size: int, size: int) -> None:
    if input_size > 1 and size % input_size:
        with pytest.raises(ValueError, match="integer scale"):
            UpsampleSpec.for_size(4, size, input_size=input_size)
        return
    spec = UpsampleSpec.for_size(4, size, input_size=input_size)
    assert spec.output_size(input_size) == (size, size)
    report = spec.diagnose(input_size)
    assert report.dead == 0 and not report.uneven_axes, report.verdict
    if input_size == 1:
        assert spec.kernel_size == (size, size) and spec.stride == (1, 1) and spec.crops == ((0, 0), (0, 0))


def test_for_size_dcgan_and_non_square() -> None:
    assert UpsampleSpec.for_size(64, 8, input_size=4) == UpsampleSpec(64, kernel_size=4, stride=2, padding=1)
    spec = UpsampleSpec.for_size(3, (8, 12), input_size=(2, 3), out_channels=5, residual="projection")
    assert spec.output_size((2, 3)) == (8, 12) and spec.out_channels == 5 and spec.residual == "projection"
    assert spec.diagnose((2, 3)).ok


def test_for_size_with_larger_kernel_crops_evenly() -> None:
    spec = UpsampleSpec.for_size(4, 16, kernel_size=19)
    assert spec.output_size(1) == (16, 16) and spec.crops == ((1, 2), (1, 2))


def test_for_size_explains_what_would_work() -> None:
    with pytest.raises(ValueError, match=r"kernel_size >= 16"):
        UpsampleSpec.for_size(64, 16, kernel_size=3)
    with pytest.raises(ValueError, match="multiple of the stride"):
        UpsampleSpec.for_size(64, 8, input_size=4, kernel_size=3)


@settings(max_examples=200, deadline=None)
@given(specs())
def test_json_and_dict_round_trip(spec: UpsampleSpec) -> None:
    assert UpsampleSpec.from_json(spec.to_json()) == spec
    assert UpsampleSpec.from_dict(spec.to_dict()) == spec
    assert json.loads(spec.to_json()) == spec.to_dict()


def test_from_dict_rejects_unknown_keys_and_versions() -> None:
    data = UpsampleSpec(4, kernel_size=2).to_dict()
    with pytest.raises(ValueError, match=r"unknown spec keys \['colour'\]"):
        UpsampleSpec.from_dict({**data, "colour": "red"})
    with pytest.raises(ValueError, match="version 7 is not supported"):
        UpsampleSpec.from_dict({**data, "version": 7})
    with pytest.raises(ValueError, match="missing keys"):
        UpsampleSpec.from_dict({k: v for k, v in data.items() if k != "stride"})
    with pytest.raises(ValueError, match="not valid JSON"):
        UpsampleSpec.from_json("{oops")


BAD_ARGUMENTS = [
    ({"in_channels": 0}, ValueError, r"in_channels must be positive, got 0"),
    ({"in_channels": 2.5}, TypeError, r"in_channels must be an int, got 2.5"),
    ({"in_channels": True}, TypeError, r"in_channels must be an int, got True \(a bool\)"),
    ({"out_channels": -1}, ValueError, r"out_channels must be positive, got -1"),
    ({"kernel_size": 0}, ValueError, r"kernel_size must be positive, got 0"),
    ({"kernel_size": (3, 0)}, ValueError, r"kernel_size\[1\] must be positive, got 0"),
    ({"kernel_size": (1, 2, 3, 4)}, ValueError, r"kernel_size has 4 items: a spec has 1, 2 or 3 spatial axes"),
    ({"kernel_size": (1, 2, 3), "spatial_dims": 2}, ValueError, r"kernel_size has 3 items but spatial_dims=2"),
    ({"kernel_size": (1, 2), "stride": (1, 2, 3)}, ValueError, r"kernel_size has 2 items and stride has 3"),
    ({"spatial_dims": 4}, ValueError, r"spatial_dims must be 1, 2 or 3, got 4"),
    ({"stride": "2"}, TypeError, r"stride must be an int, got '2'"),
    ({"padding": -1}, ValueError, r"padding must be >= 0, got -1"),
    ({"padding": "full"}, ValueError, r"padding must be .*'same', 'valid'.* got 'full'"),
    ({"padding": ((0, 1.5), (0, 0))}, TypeError, r"padding\[0\] \(crop\)\[1\] must be an int, got 1.5"),
    ({"output_padding": -1}, ValueError, r"output_padding must be >= 0, got -1"),
    ({"residual": "identity"}, ValueError, r"residual must be None, 'nearest' or 'projection', got 'identity'"),
    (
        {"out_channels": 8, "residual": "nearest"},
        ValueError,
        r"in_channels=4, out_channels=8; use residual='projection'",
    ),
    ({"use_bias": 1}, TypeError, r"use_bias must be a bool, got 1"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_ARGUMENTS)
def test_validation_names_argument_and_value(kwargs: dict, error: type, message: str) -> None:
    arguments = {"in_channels": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=message):
        UpsampleSpec(**arguments)


def test_empty_output_is_an_error() -> None:
    spec = UpsampleSpec(4, kernel_size=3, padding=2)
    with pytest.raises(ValueError, match=r"output size would be \(-1, -1\) for input size \(1, 1\)"):
        spec.output_size(1)
    assert spec.output_size(4) == (2, 2)


def test_num_params_and_flops_match_weights() -> None:
    import upsample

    for residual in (None, "nearest", "projection"):
        for use_bias in (True, False):
            spec = UpsampleSpec(3, 3, kernel_size=(2, 5), stride=2, residual=residual, use_bias=use_bias)
            weights = upsample.init_weights(spec)
            assert spec.num_params() == sum(a.size for a in weights.arrays() if a is not None)
    spec = UpsampleSpec(3, 5, kernel_size=4, use_bias=False)
    assert spec.flops(2) == 2 * 4 * 3 * 16 * 5  # 4 input pixels x C_in x taps x C_out multiply-adds


def test_num_params_is_a_method_like_flops_and_still_reads_as_an_attribute() -> None:
    import upsample

    for spec in (
        UpsampleSpec(3, 4, kernel_size=2),
        upsample.SubpixelSpec(3, 4),
        upsample.ResizeSpec(3, 4),
        upsample.plan(4, 8, out_channels=2),
    ):
        count = spec.num_params()
        assert type(count) is int and count == spec.num_params and count > 0
        assert f"{spec.num_params:,}" == f"{count:,}"


def test_coverage_is_outer_product_of_axes() -> None:
    spec = UpsampleSpec(1, kernel_size=(3, 2), stride=(2, 3), padding=((0, -1), (1, 0)))
    coverage = spec.coverage((3, 2))
    assert coverage.dtype.kind == "i"
    assert np.linalg.matrix_rank(coverage) <= 1
