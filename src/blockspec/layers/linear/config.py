"""Configs of linear layers and of parameter-efficient fine-tuning (LoRA)."""

from __future__ import annotations

from pydantic import Field

from ...config import Config
from ..families import InitializationConfig, PeftConfig

__all__ = ["LinearConfig", "LoraConfig", "NoPeftConfig"]


class LinearConfig(Config):
    """A linear layer. Unset fields take the default of the layer that owns it."""

    bias: bool | None = None
    """Whether the layer adds a bias; None means the owner's default."""
    weight_initialization: InitializationConfig | None = None
    """Initialization of the weight; None means the owner's default."""
    bias_initialization: InitializationConfig | None = None
    """Initialization of the bias; None means the owner's default (zeros)."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of this layer's parameters (0 freezes them); None means 1."""
    weight_decay: bool | None = None
    """Whether weight decay applies to the weight; None means the owner's default (yes). Biases never decay."""
    apply_peft: bool | None = None
    """Whether the model's peft (LoRA) adapts this layer; None means the owner's default."""

    def num_parameters(self, *, in_features: int, out_features: int, peft: PeftConfig | None = None) -> int:
        """Return the parameter count of the `Linear` this config builds, LoRA adapters included.

        Call it on the resolved config, which is what the module is built from. Under a `lora` peft a
        layer with `apply_peft` on adds rank * (in_features + out_features) adapter parameters.
        """
        count = in_features * out_features + (out_features if self.bias else 0)
        if isinstance(peft, LoraConfig) and self.apply_peft:
            count += peft.rank * (in_features + out_features)
        return count


class NoPeftConfig(PeftConfig, type_name="none"):
    """No parameter-efficient fine-tuning: every parameter trains as configured."""


class LoraConfig(PeftConfig, type_name="lora"):
    """LoRA: a trainable low-rank update B @ A, scaled by alpha / rank, on each adapted linear."""

    rank: int = Field(8, gt=0)
    """Rank of the update."""
    alpha: float = Field(16.0, gt=0)
    """Scale numerator: the update is multiplied by alpha / rank."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability on the adapter's input."""
