"""Normalization modules: RMS norm, layer norm and the identity.

Each normalizes over the last dimension. The arithmetic runs in float32 and the result
is cast back to the input's dtype, so bfloat16 activations keep full-precision statistics.

NOTE: the weight product also runs in float32, as in `GemmaRMSNorm` of Hugging Face
transformers 5. `LlamaRMSNorm` there rounds to the input dtype before the weight product.
In bfloat16 the two can therefore differ by one rounding step, and in float32 they agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...build import register_module
from ..initialization.config import ZerosInitializationConfig
from ..parameter.module import parameter_from_config
from .config import (
    LayerNormConfig,
    NoNormalizationConfig,
    RMSNormConfig,
    _weight_initialization,
)

__all__ = ["LayerNorm", "NoNormalization", "RMSNorm"]


def _scale(value: float | None) -> float:
    return 1.0 if value is None else value


@register_module(RMSNormConfig)
class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + epsilon) * weight, with weight stored as w - 1 when zero_centered."""

    def __init__(self, config: RMSNormConfig, *, hidden_size: int, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = hidden_size
        self.weight = parameter_from_config(
            config.weight,
            (hidden_size,),
            lr_scale=lr_scale * _scale(config.lr_scale),
            default_initialization=_weight_initialization(config.zero_centered),
            default_weight_decay=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_float = x.float()
        x_float = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.config.epsilon)
        weight = self.weight.float()
        if self.config.zero_centered:
            weight = weight + 1.0
        return (x_float * weight).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, epsilon={self.config.epsilon}, zero_centered={self.config.zero_centered}"


@register_module(LayerNormConfig)
class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + epsilon) * weight + bias, with weight stored as w - 1 when zero_centered."""

    def __init__(self, config: LayerNormConfig, *, hidden_size: int, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = hidden_size
        lr_scale = lr_scale * _scale(config.lr_scale)
        self.weight = parameter_from_config(
            config.weight,
            (hidden_size,),
            lr_scale=lr_scale,
            default_initialization=_weight_initialization(config.zero_centered),
            default_weight_decay=False,
        )
        self.bias = None
        if config.bias:
            self.bias = parameter_from_config(
                config.bias_parameter,
                (hidden_size,),
                lr_scale=lr_scale,
                default_initialization=ZerosInitializationConfig(),
                default_weight_decay=False,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float()
        if self.config.zero_centered:
            weight = weight + 1.0
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), (self.hidden_size,), weight, bias, self.config.epsilon).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.hidden_size}, epsilon={self.config.epsilon}, zero_centered={self.config.zero_centered}, "
            f"bias={self.bias is not None}"
        )


@register_module(NoNormalizationConfig)
class NoNormalization(nn.Module):
    """Return the input unchanged; takes the same build arguments as the other normalizations."""

    def __init__(self, config: NoNormalizationConfig, *, hidden_size: int, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
