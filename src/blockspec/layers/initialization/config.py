"""Initialization configs: how a weight's initial values are drawn."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from ..families import InitializationConfig

__all__ = [
    "DepthScaledNormalInitializationConfig",
    "FanInNormalInitializationConfig",
    "FillInitializationConfig",
    "KaimingUniformInitializationConfig",
    "NormalInitializationConfig",
    "OnesInitializationConfig",
    "UniformInitializationConfig",
    "ZerosInitializationConfig",
]


class FillInitializationConfig(InitializationConfig, type_name="fill"):
    """Every element set to one value."""

    value: float
    """The value every element is set to."""


class ZerosInitializationConfig(InitializationConfig, type_name="zeros"):
    """Every element set to 0."""


class OnesInitializationConfig(InitializationConfig, type_name="ones"):
    """Every element set to 1."""


class NormalInitializationConfig(InitializationConfig, type_name="normal"):
    """Normal distribution, optionally truncated to [low, high]."""

    mean: float = 0.0
    """Mean of the distribution."""
    std: float = Field(0.02, ge=0)
    """Standard deviation of the distribution (before truncation)."""
    low: float | None = None
    """Lower truncation bound, in absolute units; None means no lower bound."""
    high: float | None = None
    """Upper truncation bound, in absolute units; None means no upper bound."""

    @model_validator(mode="after")
    def _check_bounds(self):
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"truncation bounds are empty: low={self.low} must be less than high={self.high}")
        return self


class UniformInitializationConfig(InitializationConfig, type_name="uniform"):
    """Uniform distribution on [low, high)."""

    low: float = -0.02
    """Lower bound of the distribution."""
    high: float = 0.02
    """Upper bound of the distribution."""

    @model_validator(mode="after")
    def _check_bounds(self):
        if self.low >= self.high:
            raise ValueError(f"empty range: low={self.low} must be less than high={self.high}")
        return self


class FanInNormalInitializationConfig(InitializationConfig, type_name="fan_in_normal"):
    """Normal distribution with std = scale / sqrt(fan_in), fan_in being the layer's input features."""

    scale: float = Field(1.0, ge=0)
    """Multiplier of 1 / sqrt(fan_in)."""


class DepthScaledNormalInitializationConfig(InitializationConfig, type_name="depth_scaled_normal"):
    """Normal distribution with std / sqrt(2 * num_layers), for residual-branch outputs (GPT-2, Megatron)."""

    mean: float = 0.0
    """Mean of the distribution."""
    std: float = Field(0.02, ge=0)
    """Standard deviation before division by sqrt(2 * num_layers)."""


class KaimingUniformInitializationConfig(InitializationConfig, type_name="kaiming_uniform"):
    """Kaiming-uniform on fan_in, as `torch.nn.Linear` initializes its weight by default."""

    a: float = Field(math.sqrt(5), ge=0)
    """Negative slope of the leaky ReLU the gain is computed for (sqrt(5) gives PyTorch's default)."""
