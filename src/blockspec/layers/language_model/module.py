"""The language model: embeddings -> transformer -> head, with the next-token loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...build import build_module, register_module
from ..parameter.module import parameter_from_config
from .config import (
    LanguageModelConfig,
    LanguageModelEmbeddingsConfig,
    LanguageModelHeadConfig,
)

__all__ = ["LanguageModel", "LanguageModelEmbeddings", "LanguageModelHead", "LanguageModelOutput"]

IGNORE_INDEX = -100
"""Label value that the loss skips (the convention of torch.nn.functional.cross_entropy)."""


def _scale(value: float | None) -> float:
    return 1.0 if value is None else value


@dataclass
class LanguageModelOutput:
    """Result of a language model forward."""

    logits: torch.Tensor
    """Next-token logits, (batch, seq, vocab_size)."""
    loss: torch.Tensor | None = None
    """Mean shifted cross entropy (0 when no label is a target) plus the sum of `aux_losses`; None without labels."""
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    """Auxiliary losses (such as MoE load balancing) summed over layers, already weighted."""


@register_module(LanguageModelEmbeddingsConfig)
class LanguageModelEmbeddings(nn.Module):
    """Token embedding lookup, plus learned absolute position embeddings, times `scale`."""

    def __init__(self, config: LanguageModelEmbeddingsConfig, *, hidden_size: int, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.config = config
        lr_scale = lr_scale * _scale(config.lr_scale)
        self.word_weight = parameter_from_config(config.word_weight, (config.vocab_size, hidden_size), lr_scale=lr_scale, fan_in=hidden_size)
        self.position_weight = None
        if config.position_embeddings is not None:
            shape = (config.position_embeddings, hidden_size)
            self.position_weight = parameter_from_config(config.position_weight, shape, lr_scale=lr_scale, fan_in=hidden_size)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, input_ids: torch.Tensor, *, positions: torch.Tensor) -> torch.Tensor:
        x = F.embedding(input_ids, self.word_weight)  # (batch, seq, hidden)
        if self.position_weight is not None:
            # The check reads a value off the device, so it is skipped on meta and while compiling.
            checked = not positions.is_meta and not torch.compiler.is_compiling()
            if checked and positions.max() >= self.position_weight.shape[0]:
                raise ValueError(
                    f"position {int(positions.max())} is beyond the {self.position_weight.shape[0]} learned "
                    "position embeddings (embeddings.position_embeddings); use shorter inputs"
                )
            x = x + F.embedding(positions, self.position_weight)
        if self.config.scale is not None:
            # The scale is rounded to the activation dtype first, as Gemma does for sqrt(hidden_size).
            x = x * torch.tensor(self.config.scale, dtype=x.dtype, device=x.device)
        return self.dropout(x)


@register_module(LanguageModelHeadConfig)
class LanguageModelHead(nn.Module):
    """Final normalization and output projection; `output_weight` is the embedding table when tied."""

    def __init__(
        self,
        config: LanguageModelHeadConfig,
        *,
        hidden_size: int,
        vocab_size: int,
        lr_scale: float = 1.0,
        tied_weight: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        lr_scale = lr_scale * _scale(config.lr_scale)
        self.normalization = build_module(config.normalization, hidden_size=hidden_size, lr_scale=lr_scale)
        if tied_weight is not None:
            self.output_weight = tied_weight
        else:
            self.output_weight = parameter_from_config(config.output_weight, (vocab_size, hidden_size), lr_scale=lr_scale, fan_in=hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalization(x)
        logits = F.linear(x.to(self.output_weight.dtype), self.output_weight)  # (batch, seq, vocab)
        if self.config.logits_scale is not None:
            logits = logits * self.config.logits_scale
        if self.config.logit_soft_cap is not None:
            cap = self.config.logit_soft_cap
            logits = cap * torch.tanh(logits / cap)
        return logits


@register_module(LanguageModelConfig)
class LanguageModel(nn.Module):
    """A causal language model: embeddings -> transformer -> head."""

    def __init__(self, config: LanguageModelConfig, *, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.config = config
        lr_scale = lr_scale * _scale(config.lr_scale)
        hidden_size = config.hidden_size

        self.embeddings = build_module(config.embeddings, hidden_size=hidden_size, lr_scale=lr_scale)
        self.transformer = build_module(
            config.transformer,
            hidden_size=hidden_size,
            lr_scale=lr_scale,
            peft=config.peft,
            full_precision_residual=config.full_precision_residual,
        )
        tied_weight = self.embeddings.word_weight if config.tied_embeddings else None
        self.head = build_module(config.head, hidden_size=hidden_size, vocab_size=config.vocab_size, lr_scale=lr_scale, tied_weight=tied_weight)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, *, cache: Any = None) -> LanguageModelOutput:
        """Return the logits of `input_ids` (batch, seq) and, given `labels` (batch, seq), the loss.

        Labels are the input ids themselves (shifted inside: position i predicts label i + 1),
        with -100 at positions to ignore. The cross entropy is 0 when no position has a
        target (see `next_token_loss`). With a `cache`, positions continue after the tokens
        the cache has seen.
        """
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
        seq = input_ids.shape[1]
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + seq, device=input_ids.device)

        x = self.embeddings(input_ids, positions=positions)  # (batch, seq, hidden)
        if self.config.full_precision_residual:
            x = x.float()
        x = self.transformer(x, positions=positions, cache=cache)
        logits = self.head(x)  # (batch, seq, vocab)

        aux_losses = dict(getattr(self.transformer, "aux_losses", {}))
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels)
            for aux_loss in aux_losses.values():
                loss = loss + aux_loss
        return LanguageModelOutput(logits=logits, loss=loss, aux_losses=aux_losses)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the mean cross entropy of logits[:, i] against labels[:, i + 1], skipping -100 labels.

    Without any target (every shifted label is -100, or the sequence has one token) the
    loss is 0. `F.cross_entropy` returns NaN there, a mean over nothing, and so does the
    `ForCausalLMLoss` of Hugging Face transformers 5.x without `num_items_in_batch`. The
    zero stays connected to `logits`, so `backward()` gives zero gradients.
    """
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1).long()
    total = F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    targets = (shifted_labels != IGNORE_INDEX).sum()
    return total / targets.clamp(min=1)
