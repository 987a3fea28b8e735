"""The Linear module, with optional LoRA adapters, and the functions that merge or save them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...build import new_parameter, parameter_spec, register_module
from ..families import InitializationConfig, PeftConfig
from ..initialization.config import (
    KaimingUniformInitializationConfig,
    NormalInitializationConfig,
    ZerosInitializationConfig,
)
from .config import LinearConfig, LoraConfig

__all__ = ["Linear", "lora_state_dict", "merge_lora"]


@register_module(LinearConfig)
class Linear(nn.Module):
    """y = x @ weight.T + bias, plus (dropout(x) @ lora_a.T @ lora_b.T) * alpha / rank when LoRA applies.

    Fields the config leaves None (after parent defaults) mean: no bias, weight drawn
    from normal(0, 0.02), bias zeros, weight decay on the weight, lr scale 1, no LoRA.
    With LoRA the weight and bias are frozen (requires_grad=False) and only `lora_a`
    (rank, in_features) and `lora_b` (out_features, rank) train. `lora_b` starts at
    zero, so the adapted layer starts equal to the base layer.
    """

    def __init__(
        self,
        config: LinearConfig,
        in_features: int,
        out_features: int,
        *,
        lr_scale: float = 1.0,
        peft: PeftConfig | None = None,
        num_layers: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.in_features = in_features
        self.out_features = out_features
        lr_scale = lr_scale * (1.0 if config.lr_scale is None else config.lr_scale)

        self.weight = new_parameter(
            (out_features, in_features),
            initialization=_or_default(config.weight_initialization, NormalInitializationConfig()),
            lr_scale=lr_scale,
            weight_decay=config.weight_decay is not False,
            fan_in=in_features,
            num_layers=num_layers,
        )
        self.bias = None
        if config.bias:
            self.bias = new_parameter(
                (out_features,),
                initialization=_or_default(config.bias_initialization, ZerosInitializationConfig()),
                lr_scale=lr_scale,
                weight_decay=False,
                fan_in=in_features,
                num_layers=num_layers,
            )

        self.lora_a = None
        self.lora_b = None
        self.lora_dropout: nn.Module | None = None
        self.lora_scaling = 0.0
        if isinstance(peft, LoraConfig) and config.apply_peft:
            self._add_lora(peft, lr_scale)

    def _add_lora(self, peft: LoraConfig, lr_scale: float) -> None:
        for parameter in (self.weight, self.bias):
            if parameter is not None:
                parameter.requires_grad_(False)
        # A is random (nn.Linear's default Kaiming-uniform) and B is zero, so B @ A starts at 0.
        self.lora_a = new_parameter(
            (peft.rank, self.in_features),
            initialization=KaimingUniformInitializationConfig(),
            lr_scale=lr_scale,
            fan_in=self.in_features,
            is_lora=True,
        )
        self.lora_b = new_parameter(
            (self.out_features, peft.rank),
            initialization=ZerosInitializationConfig(),
            lr_scale=lr_scale,
            fan_in=peft.rank,
            is_lora=True,
        )
        self.lora_dropout = nn.Dropout(peft.dropout) if peft.dropout > 0 else nn.Identity()
        self.lora_scaling = peft.alpha / peft.rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., out_features)
        if self.lora_a is not None:
            update = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)  # (..., rank) -> (..., out_features)
            y = y + update * self.lora_scaling
        return y

    @torch.no_grad()
    def merge_lora(self) -> None:
        """Add (lora_b @ lora_a) * alpha / rank to the weight and remove the adapters.

        The product is computed in float32 and rounded once to the weight's dtype. The
        weight keeps requires_grad=False; set it yourself to train the merged layer.
        """
        if self.lora_a is None:
            return
        update = (self.lora_b.float() @ self.lora_a.float()) * self.lora_scaling
        self.weight.add_(update.to(self.weight.dtype))
        self.lora_a = None
        self.lora_b = None
        self.lora_dropout = None
        self.lora_scaling = 0.0

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        if self.lora_a is not None:
            text += f", lora_rank={self.lora_a.shape[0]}, lora_scaling={self.lora_scaling:g}"
        return text


def _or_default(value: InitializationConfig | None, default: InitializationConfig) -> InitializationConfig:
    return default if value is None else value


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge the LoRA adapters of every `Linear` in `model` into its weight, in place; return `model`."""
    for module in model.modules():
        if isinstance(module, Linear):
            module.merge_lora()
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return only the LoRA parameters of `model`, by name, detached.

    Load them back into a model built from the same config with
    `model.load_state_dict(adapters, strict=False)`.
    """
    adapters = {}
    for name, parameter in model.named_parameters():
        spec = parameter_spec(parameter)
        if spec is not None and spec.is_lora:
            adapters[name] = parameter.detach()
    return adapters
