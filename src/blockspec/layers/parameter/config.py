"""Config of a standalone weight (embedding table, norm weight, output weight)."""

from __future__ import annotations

from pydantic import Field

from ...config import Config
from ..families import InitializationConfig

__all__ = ["ParameterConfig", "WeightConfig"]


class ParameterConfig(Config):
    """Initialization and optimizer settings of one standalone weight.

    Unset fields take the default of the layer that owns the weight.
    """

    initialization: InitializationConfig | None = None
    """Initialization of the weight; None means the owning layer's default."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate (0 freezes the weight); None means 1."""
    weight_decay: bool | None = None
    """Whether weight decay applies; None means the owning layer's default."""


WeightConfig = ParameterConfig
