"""A table of a model's parameters: shapes, counts, initialization and optimizer settings.

It reads shapes and specs only, so it works on a model built on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .build import parameter_spec
from .optim import optimizer_settings

__all__ = ["ParameterReport", "ParameterRow", "parameter_report"]


@dataclass(frozen=True)
class ParameterRow:
    """One parameter (listed once even when tied) and its settings."""

    name: str
    shape: tuple[int, ...]
    count: int
    dtype: str
    device: str
    initialization: str
    """Initialization type and its fields, e.g. `normal(mean=0, std=0.02)`, or `-` for a parameter without a spec."""
    lr_scale: float
    weight_decay: bool
    trainable: bool
    """requires_grad and a nonzero lr scale."""
    is_lora: bool
    tied_names: tuple[str, ...] = ()
    """Other names under which the same parameter appears in the model."""


@dataclass(frozen=True)
class ParameterReport:
    """Every parameter of a model with totals; `str()` gives a text table."""

    rows: list[ParameterRow] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Number of parameter elements, counting a tied parameter once."""
        return sum(row.count for row in self.rows)

    @property
    def trainable(self) -> int:
        """Number of elements that an optimizer built by `param_groups` updates."""
        return sum(row.count for row in self.rows if row.trainable)

    def counts_by_prefix(self, depth: int = 1) -> dict[str, int]:
        """Return the element count per name prefix of `depth` dotted parts, in model order."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        counts: dict[str, int] = {}
        for row in self.rows:
            prefix = ".".join(row.name.split(".")[:depth])
            counts[prefix] = counts.get(prefix, 0) + row.count
        return counts

    def table(self) -> str:
        """Return the rows as an aligned text table followed by the totals."""
        header = ("name", "shape", "count", "dtype", "initialization", "lr_scale", "decay", "trainable")
        lines = [header]
        for row in self.rows:
            name = row.name
            if row.tied_names:
                name += f" (tied: {', '.join(row.tied_names)})"
            trainable = "yes" if row.trainable else "no"
            if row.is_lora:
                trainable += " (lora)"
            shape = "x".join(str(size) for size in row.shape) or "scalar"
            decay = "yes" if row.weight_decay else "no"
            lines.append((name, shape, f"{row.count:,}", row.dtype, row.initialization, f"{row.lr_scale:g}", decay, trainable))
        widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
        text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
        text.append(f"total: {self.total:,} parameters, {self.trainable:,} trainable")
        return "\n".join(text)

    def __str__(self) -> str:
        return self.table()


def parameter_report(model: nn.Module) -> ParameterReport:
    """Describe every parameter of `model`, in `named_parameters()` order."""
    names: dict[int, list[str]] = {}
    parameters: dict[int, nn.Parameter] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
        parameters[id(parameter)] = parameter
    return ParameterReport([_row(parameters[key], names[key]) for key in names])


def _row(parameter: nn.Parameter, names: list[str]) -> ParameterRow:
    spec = parameter_spec(parameter)
    lr_scale, weight_decay = optimizer_settings(parameter)
    return ParameterRow(
        name=names[0],
        shape=tuple(parameter.shape),
        count=parameter.numel(),
        dtype=str(parameter.dtype).removeprefix("torch."),
        device=str(parameter.device),
        initialization=_describe_initialization(spec.initialization) if spec is not None else "-",
        lr_scale=lr_scale,
        weight_decay=weight_decay,
        trainable=parameter.requires_grad and lr_scale != 0,
        is_lora=spec is not None and spec.is_lora,
        tied_names=tuple(names[1:]),
    )


def _describe_initialization(config: object) -> str:
    data = config.to_dict(resolved=True)  # type: ignore[attr-defined]
    type_name = data.pop("type", type(config).__name__)
    arguments = ", ".join(f"{key}={_format_value(value)}" for key, value in data.items() if value is not None)
    return f"{type_name}({arguments})"


def _format_value(value: object) -> str:
    # Six significant digits keep a std such as 1 / 24 readable (0.0416667).
    return f"{value:.6g}" if isinstance(value, float) else str(value)
