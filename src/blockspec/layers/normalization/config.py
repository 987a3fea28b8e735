"""Normalization layer configs."""

from __future__ import annotations

from pydantic import Field, model_validator
from typing_extensions import Self

from ..families import InitializationConfig, NormalizationConfig
from ..initialization.config import OnesInitializationConfig, ZerosInitializationConfig
from ..parameter.config import ParameterConfig

__all__ = ["LayerNormConfig", "NoNormalizationConfig", "RMSNormConfig"]


class RMSNormConfig(NormalizationConfig, type_name="rms_norm"):
    """Root-mean-square normalization with a learned per-channel weight."""

    epsilon: float = Field(1e-5, gt=0)
    """Added to the mean square before the square root."""
    zero_centered: bool = False
    """Store the weight as w - 1 (initialized to 0), as Gemma does."""
    weight: ParameterConfig = ParameterConfig()
    """The per-channel weight (default: ones, or zeros when zero_centered; no weight decay)."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of this layer's parameters; None means 1."""

    @model_validator(mode="after")
    def _default_weight(self) -> Self:
        self._fill_defaults("weight", initialization=_weight_initialization(self.zero_centered), weight_decay=False)
        return self

    def num_parameters(self, *, hidden_size: int) -> int:
        """Return the parameter count over `hidden_size` channels: one weight per channel."""
        return hidden_size


class LayerNormConfig(NormalizationConfig, type_name="layer_norm"):
    """Layer normalization (mean and variance) with a learned weight and optional bias."""

    epsilon: float = Field(1e-5, gt=0)
    """Added to the variance before the square root."""
    zero_centered: bool = False
    """Store the weight as w - 1 (initialized to 0)."""
    bias: bool = True
    """Whether the layer adds a learned bias."""
    weight: ParameterConfig = ParameterConfig()
    """The per-channel weight (default: ones, or zeros when zero_centered; no weight decay)."""
    bias_parameter: ParameterConfig = ParameterConfig()
    """The per-channel bias (default: zeros; no weight decay)."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of this layer's parameters; None means 1."""

    @model_validator(mode="after")
    def _default_parameters(self) -> Self:
        self._fill_defaults("weight", initialization=_weight_initialization(self.zero_centered), weight_decay=False)
        self._fill_defaults("bias_parameter", initialization=ZerosInitializationConfig(), weight_decay=False)
        return self

    def num_parameters(self, *, hidden_size: int) -> int:
        """Return the parameter count over `hidden_size` channels: a weight, and a bias when `bias` is set."""
        return hidden_size * (2 if self.bias else 1)


class NoNormalizationConfig(NormalizationConfig, type_name="none"):
    """Identity: no normalization."""

    def num_parameters(self, *, hidden_size: int) -> int:
        """Return 0: the identity has no parameters."""
        return 0


def _weight_initialization(zero_centered: bool) -> InitializationConfig:
    """Return the initialization that makes the layer start as a plain normalization (scale 1)."""
    return ZerosInitializationConfig() if zero_centered else OnesInitializationConfig()
