"""Optimizer parameter groups derived from each parameter's lr scale and weight decay setting."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .build import parameter_spec

__all__ = ["optimizer_settings", "param_groups"]


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Return parameter groups for a `torch.optim` optimizer, one per (lr scale, decay) pair.

    Each group has `params`, `lr` (= `lr` * the parameter's lr scale), `weight_decay`
    (`weight_decay` or 0.0) and `lr_scale`, the last kept for learning-rate schedulers
    that set `lr` from a base value. Parameters with requires_grad=False or an lr scale
    of 0 are left out. Groups come in the order their first parameter appears in
    `model.named_parameters()`, and a tied parameter is listed once.

    A parameter created without `blockspec.build.new_parameter` has no spec. It gets lr
    scale 1 and decays when it has two or more dimensions (matrices and embedding
    tables, but not biases or norm weights).
    """
    if lr < 0:
        raise ValueError(f"lr must be non-negative, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")

    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        lr_scale, decays = optimizer_settings(parameter)
        if lr_scale == 0:
            continue
        group = groups.get((lr_scale, decays))
        if group is None:
            group = {
                "params": [],
                "lr": lr * lr_scale,
                "weight_decay": weight_decay if decays else 0.0,
                "lr_scale": lr_scale,
            }
            groups[(lr_scale, decays)] = group
        group["params"].append(parameter)
    return list(groups.values())


def optimizer_settings(parameter: torch.Tensor) -> tuple[float, bool]:
    """Return the parameter's lr scale and whether weight decay applies to it (see `param_groups`)."""
    spec = parameter_spec(parameter)
    if spec is None:
        return 1.0, parameter.ndim >= 2
    return spec.lr_scale, spec.weight_decay
