"""A small model config and module built only from the weight layers (linear, normalization).

Tests of materialize, param_groups and parameter_report use it, so their expected values
do not change when the attention, mlp or language model layers change.
"""

from __future__ import annotations

import torch
from torch import nn

from blockspec import LinearConfig, ModelConfig, NormalizationConfig, PeftConfig
from blockspec.build import build_module, register_module
from blockspec.layers.linear.module import Linear  # noqa: F401  (registers Linear)
from blockspec.layers.normalization.module import RMSNorm  # noqa: F401  (registers the norms)

HIDDEN = 8


class TinyModelConfig(ModelConfig, type_name="test_tiny_model"):
    """Linear -> normalization -> output linear, plus a spec-less torch Linear and a buffer."""

    projection: LinearConfig = LinearConfig()
    """The first linear."""
    normalization: NormalizationConfig | None = None
    """The normalization; None means rms_norm."""
    output: LinearConfig = LinearConfig()
    """The last linear."""
    peft: PeftConfig | None = None
    """Passed to every linear; None means no peft."""
    tied: bool = False
    """Whether the output weight is the projection weight."""
    extra_layer: bool = False
    """Whether a linear named `before` is created first, to check order independence."""
    lr_scale: float | None = None
    """Multiplier of the learning rate of every parameter; None means 1."""


@register_module(TinyModelConfig)
class TinyModel(nn.Module):
    def __init__(self, config: TinyModelConfig) -> None:
        super().__init__()
        lr_scale = 1.0 if config.lr_scale is None else config.lr_scale
        if config.extra_layer:
            self.before = Linear(LinearConfig(), HIDDEN, HIDDEN)
        self.projection = build_module(
            config.projection, in_features=HIDDEN, out_features=HIDDEN, lr_scale=lr_scale, peft=config.peft, num_layers=2
        )
        normalization = config.normalization or NormalizationConfig.from_dict({}).resolved
        self.normalization = build_module(normalization, hidden_size=HIDDEN, lr_scale=lr_scale)
        self.output = build_module(config.output, in_features=HIDDEN, out_features=HIDDEN, lr_scale=lr_scale, peft=config.peft)
        if config.tied:
            self.output.weight = self.projection.weight
        self.plain = nn.Linear(HIDDEN, 2)
        self.register_buffer("table", torch.empty(HIDDEN), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        with torch.no_grad():
            self.table.copy_(torch.arange(HIDDEN, dtype=self.table.dtype, device=self.table.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.plain(self.output(self.normalization(self.projection(x)) + self.table))

