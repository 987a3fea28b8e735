"""Creating a standalone weight (embedding table, norm weight, output weight) from its config."""

from __future__ import annotations

import torch
from torch import nn

from ...build import new_parameter
from ..families import InitializationConfig
from ..initialization.config import NormalInitializationConfig
from .config import ParameterConfig

__all__ = ["parameter_from_config"]


def parameter_from_config(
    config: ParameterConfig,
    shape: tuple[int, ...] | torch.Size,
    *,
    lr_scale: float = 1.0,
    default_initialization: InitializationConfig | None = None,
    default_weight_decay: bool = True,
    fan_in: int | None = None,
    num_layers: int | None = None,
) -> nn.Parameter:
    """Create an uninitialized parameter of `shape` as `config` specifies.

    `lr_scale` is the product of the lr scales above the weight; the config's own
    `lr_scale` is multiplied in. Fields the config leaves None (after parent defaults)
    take `default_initialization` (normal with std 0.02 when that is None too) and
    `default_weight_decay`.
    """
    initialization = config.initialization
    if initialization is None:
        initialization = default_initialization if default_initialization is not None else NormalInitializationConfig()
    weight_decay = default_weight_decay if config.weight_decay is None else config.weight_decay
    return new_parameter(
        shape,
        initialization=initialization,
        lr_scale=lr_scale * _scale(config.lr_scale),
        weight_decay=weight_decay,
        fan_in=fan_in,
        num_layers=num_layers,
    )


def _scale(value: float | None) -> float:
    return 1.0 if value is None else value
