"""What the ``upsample`` command prints: a spec's or a head's summary (as a table or the dict ``--json``
writes), the title of a coverage picture, and ``check``'s table of backends."""

from __future__ import annotations

import textwrap
from typing import Any

from upsample.arguments import size_text

TEXT_WIDTH = 78
"""Characters of a table line at most (a value wraps under itself)."""


def summary(spec: Any, size: tuple[int, ...], size_from: str) -> dict[str, Any]:
    """One layer at input ``size``: its spec, sizes, cost and coverage verdict (``inspect --json``)."""
    report = spec.diagnose(size)
    return {
        "spec": spec.to_dict(),
        "input_size": list(report.input_size),
        "input_size_from": size_from,
        "output_size": list(report.output_size),
        "parameters": spec.num_params,
        "flops_per_sample": spec.flops(size),
        "dead_pixels": report.dead,
        "uneven_axes": list(report.uneven_axes),
        "verdict": report.verdict,
    }


def head_summary(head: Any, size: tuple[int, ...], size_from: str) -> dict[str, Any]:
    """A whole head (``HeadSpec``) at input ``size``: its spec, sizes, cost, and each stage's coverage at
    that stage's own input size; ``ok`` only if every stage is."""
    report = head.diagnose(size)
    stages = [
        {
            "input_size": list(stage.input_size),
            "output_size": list(stage.output_size),
            "dead_pixels": stage.dead,
            "uneven_axes": list(stage.uneven_axes),
            "verdict": stage.verdict,
        }
        for stage in report.stages
    ]
    return {
        "spec": head.to_dict(),
        "input_size": list(size),
        "input_size_from": size_from,
        "output_size": list(head.output_size(size)),
        "parameters": head.num_params,
        "flops_per_sample": head.flops(size),
        "stages": stages,
        "ok": report.ok,
    }


def norm_line(norm: Any) -> str:
    """A head's :class:`~upsample.Norm` in one line under its table: its kind and epsilon, GroupNorm's groups,
    BatchNorm's momentum (the weight of the new batch, torch's convention)."""
    if norm.kind == "group":
        return f"norm: groupnorm, {norm.groups} groups, epsilon {norm.epsilon:g}"
    if norm.kind == "batch":
        return f"norm: batchnorm, epsilon {norm.epsilon:g}, momentum {norm.momentum:g} (weight of the new batch)"
    return f"norm: {norm.kind}norm, epsilon {norm.epsilon:g}"


def print_head(head: Any, summary: dict[str, Any]) -> None:
    """The head's stage table (``HeadSpec.table``, as ``plan --head`` prints it), its norm's constants and
    each stage's verdict."""
    size, out = summary["input_size"], summary["output_size"]
    print(head.table(tuple(size)))
    if head.norm is not None:
        print(norm_line(head.norm))
    print(f"input -> output: {size_text(size)} -> {size_text(out)} (input size: {summary['input_size_from']})")
    print()
    width = len(f"stage {len(summary['stages']) - 1}")
    for i, stage in enumerate(summary["stages"]):
        _print_wrapped(f"stage {i}", stage["verdict"], width)


def _shown_value(value: Any) -> str:
    """A spec field as the table shows it: ``3x3`` for pairs, crops per axis, ``yes``/``no``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        sides = {1: ("begin/end",), 2: ("top/bottom", "left/right"), 3: ("front/back", "top/bottom", "left/right")}
        return ", ".join(f"{side} {tuple(crop)}" for side, crop in zip(sides[len(value)], value, strict=True))
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def _print_wrapped(name: str, value: str, width: int) -> None:
    lines = textwrap.wrap(value, TEXT_WIDTH - width) or [""]
    print(f"{name:<{width}}  {lines[0]}")
    for line in lines[1:]:
        print(f"{'':<{width}}  {line}")


def print_table(summary: dict[str, Any]) -> None:
    """One layer's :func:`summary` as a two-column table, at most :data:`TEXT_WIDTH` characters wide."""
    spec = summary["spec"]
    hidden = ("version", "in_channels", "out_channels")
    fields = [(k, _shown_value(v)) for k, v in spec.items() if k not in hidden and (k, v) != ("scale", None)]
    rows = [
        ("channels", f"{spec['in_channels']} -> {spec['out_channels']}"),
        *[("bias" if key == "use_bias" else key, value) for key, value in fields],
        ("input -> output", f"{size_text(summary['input_size'])} -> {size_text(summary['output_size'])}"),
        ("input size from", summary["input_size_from"]),
        ("parameters", f"{summary['parameters']:,}"),
        ("FLOPs / sample", f"{summary['flops_per_sample']:,}"),
        ("coverage", summary["verdict"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        _print_wrapped(name, value, width)


def title(spec: dict[str, Any], size: tuple[int, ...]) -> str:
    """The picture's title: the kind and the fields that shape the map, e.g. ``transposed k=3x3 s=16x16 ...``."""
    short = {"kernel_size": "k", "stride": "s", "crops": "crops", "scale": "scale", "size": "size", "method": "method"}
    fields = [f"{name}={_compact(spec[key])}" for key, name in short.items() if spec.get(key) is not None]
    return f"{spec['kind']} {' '.join(fields)} on {size_text(size)} input"


def _compact(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return "x".join(map(str, value))
    return str(tuple(tuple(v) for v in value)) if isinstance(value, list) else str(value)


def check_table(rows: list[Any]) -> str:
    """``check``'s rows in aligned columns (a head's add the error of the weights after its SGD steps); a skipped
    or failed-to-run row shows its note across the number columns."""
    head = any(row.error_trained is not None for row in rows)
    header = ("backend", "status", "output", "err out", "err dx", "err dW", "err steps" if head else "ms/call")
    measured = [
        (
            row.backend,
            row.status,
            "x".join(map(str, row.output_shape)),
            f"{row.error_output:.1e}",
            f"{row.error_grad_x:.1e}",
            f"{row.error_grad_weights:.1e}",
            f"{row.error_trained:.1e}" if head else f"{row.ms_per_call:.2f}",
        )
        for row in rows
        if row.output_shape is not None
    ]
    widths = [max(len(line[i]) for line in (header, *measured)) for i in range(len(header))]
    widths[0] = max(widths[0], *(len(row.backend) for row in rows))

    def join(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=False)).rstrip()

    lines = [join(header)]
    numbers = iter(measured)
    for row in rows:
        lines.append(join(next(numbers)) if row.output_shape is not None else join((row.backend, row.status, row.note)))
    return "\n".join(lines)
