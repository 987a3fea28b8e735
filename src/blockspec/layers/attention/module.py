"""The attention mixer: projections, query/key norms, rotary embedding, masking, softmax."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from ...build import build_module, register_module
from ...config import ConfigError, ConfigIssue
from ..families import NormalizationConfig, PeftConfig
from .config import AttentionConfig
from .rotary import NoRotary, Rotary  # noqa: F401  (registers the rotary modules)

if TYPE_CHECKING:
    from ...generation import KVCache

__all__ = ["Attention", "attention_mask"]

# `enable_gqa` of scaled_dot_product_attention is new in torch 2.5; older versions repeat the heads.
_SDPA_HAS_GQA = torch.__version__ >= "2.5"


@register_module(AttentionConfig)
class Attention(nn.Module):
    """Multi-head self-attention with grouped key/value heads (see `AttentionConfig`).

    `layer_index` names this layer's entry in a `KVCache`, so it must be unique in the model.
    """

    supports_kv_cache: ClassVar[bool] = True
    """Whether decoding with a `KVCache` gives the same output as a full forward (see `blockspec.generate`)."""

    def __init__(
        self,
        config: AttentionConfig,
        *,
        hidden_size: int,
        layer_index: int = 0,
        num_layers: int = 1,
        lr_scale: float = 1.0,
        peft: PeftConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = hidden_size
        self.layer_index = layer_index
        self.heads = config.heads
        self.kv_heads = config.kv_heads
        self.head_size = _head_size(config, hidden_size, layer_index)
        self.softmax_scale = config.softmax_scale if config.softmax_scale is not None else 1 / math.sqrt(self.head_size)
        lr_scale = lr_scale * (1.0 if config.lr_scale is None else config.lr_scale)

        query_width = self.heads * self.head_size
        kv_width = self.kv_heads * self.head_size
        linear_args = {"lr_scale": lr_scale, "peft": peft, "num_layers": num_layers}
        self.query = build_module(config.query, in_features=hidden_size, out_features=query_width, **linear_args)
        self.key = build_module(config.key, in_features=hidden_size, out_features=kv_width, **linear_args)
        self.value = build_module(config.value, in_features=hidden_size, out_features=kv_width, **linear_args)
        self.output = build_module(config.output, in_features=query_width, out_features=hidden_size, **linear_args)

        per_head = config.qk_norm_per_head
        self.query_norm = self._build_norm(config.query_norm, self.head_size if per_head else query_width, lr_scale)
        self.key_norm = self._build_norm(config.key_norm, self.head_size if per_head else kv_width, lr_scale)

        self.rotary = build_module(config.rotary, head_size=self.head_size)

    @staticmethod
    def _build_norm(norm_config: NormalizationConfig | None, width: int, lr_scale: float) -> nn.Module | None:
        if norm_config is None:
            return None
        return build_module(norm_config, hidden_size=width, lr_scale=lr_scale)

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Attend over `x` (batch, seq, hidden) at absolute `positions` (seq,), appending to `cache` if given."""
        batch, seq, _ = x.shape

        query = self.query(x)  # (batch, seq, heads * head_size)
        key = self.key(x)  # (batch, seq, kv_heads * head_size)
        value = self.value(x)

        if not self.config.qk_norm_per_head:
            query, key = self._normalize(query, key)
        query = query.view(batch, seq, self.heads, self.head_size)
        key = key.view(batch, seq, self.kv_heads, self.head_size)
        value = value.view(batch, seq, self.kv_heads, self.head_size)
        if self.config.qk_norm_per_head:
            query, key = self._normalize(query, key)

        query, key, value = (tensor.transpose(1, 2) for tensor in (query, key, value))  # (batch, heads, seq, head_size)
        query, key = self.rotary(query, key, positions)

        key_positions = positions
        if cache is not None:
            layer_cache = cache.layer(self.layer_index, window_size=self.config.window_size)
            key, value, key_positions = layer_cache.update(key, value, positions)  # (batch, kv_heads, total, head_size)

        attended = self._attend(query, key, value, positions, key_positions)  # (batch, heads, seq, head_size)
        attended = attended.transpose(1, 2).reshape(batch, seq, self.heads * self.head_size)
        return self.output(attended)

    def _normalize(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.query_norm is not None:
            query = self.query_norm(query)
        if self.key_norm is not None:
            key = self.key_norm(key)
        return query, key

    def _attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        positions: torch.Tensor,
        key_positions: torch.Tensor,
    ) -> torch.Tensor:
        dropout = self.config.dropout if self.training else 0.0
        causal, window_size = self.config.causal, self.config.window_size
        if self.config.soft_cap is not None:
            mask = attention_mask(positions, key_positions, causal=causal, window_size=window_size)
            return self._attend_soft_capped(query, key, value, mask, dropout)

        if window_size is None and _same_positions(positions, key_positions):
            # Fast path: no window, and the keys are exactly the queries (no cache, or an empty one).
            mask, is_causal = None, causal
        elif window_size is None and positions.shape[0] == 1:
            # One new token (decoding) attends to every cached key, all of which precede it.
            mask, is_causal = None, False
        else:
            mask = attention_mask(positions, key_positions, causal=causal, window_size=window_size)
            is_causal = False

        gqa_arguments = {}
        if self.kv_heads != self.heads and _SDPA_HAS_GQA:
            gqa_arguments["enable_gqa"] = True
        elif self.kv_heads != self.heads:
            key, value = self._repeat_kv(key, value)
        # NOTE: CUDA kernel choice for a boolean mask together with enable_gqa is unmeasured;
        # it may fall back to the unfused math kernel.
        return F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=dropout,
            is_causal=is_causal,
            scale=self.softmax_scale,
            **gqa_arguments,
        )

    def _repeat_kv(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Repeat each key/value head for the heads / kv_heads query heads that share it."""
        repeats = self.heads // self.kv_heads
        return key.repeat_interleave(repeats, dim=1), value.repeat_interleave(repeats, dim=1)  # (batch, heads, total, head_size)

    def _attend_soft_capped(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, dropout: float
    ) -> torch.Tensor:
        """Explicit softmax attention with tanh soft-capping of the scaled logits (Gemma 2)."""
        key, value = self._repeat_kv(key, value)  # (batch, heads, total, head_size)

        cap = self.config.soft_cap
        scores = torch.matmul(query, key.transpose(-1, -2)) * self.softmax_scale  # (batch, heads, seq, total)
        scores = cap * torch.tanh(scores / cap)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        weights = F.dropout(weights, p=dropout, training=dropout > 0)
        return torch.matmul(weights, value)

    def extra_repr(self) -> str:
        parts = [f"heads={self.heads}", f"kv_heads={self.kv_heads}", f"head_size={self.head_size}"]
        if self.config.window_size is not None:
            parts.append(f"window_size={self.config.window_size}")
        if not self.config.causal:
            parts.append("causal=False")
        return ", ".join(parts)


def attention_mask(
    positions: torch.Tensor, key_positions: torch.Tensor, *, causal: bool, window_size: int | None
) -> torch.Tensor | None:
    """Return the boolean mask (seq, total) of keys each query may attend to, True meaning allowed.

    A query at position i attends to a key at position j when j <= i (if causal) and
    i - window_size < j (if window_size is set). Returns None when neither rule applies.
    """
    if not causal and window_size is None:
        return None
    offsets = positions[:, None] - key_positions[None, :]  # (seq, total): i - j
    visible = torch.ones_like(offsets, dtype=torch.bool)
    if causal:
        visible &= offsets >= 0
    if window_size is not None:
        visible &= offsets < window_size
    return visible


def _head_size(config: AttentionConfig, hidden_size: int, layer_index: int) -> int:
    """Return the head size, raising a ConfigError that names the field when it is invalid for `hidden_size`."""
    try:
        return config.check_hidden_size(hidden_size)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        path = ".".join(str(part) for part in detail["loc"])
        message = f"attention of layer {layer_index} in a stream of hidden_size={hidden_size}: {detail['msg']}"
        raise ConfigError(ConfigIssue(path=path, message=message, value=detail["input"])) from None


def _same_positions(positions: torch.Tensor, key_positions: torch.Tensor) -> bool:
    if key_positions is positions:
        return True
    return key_positions.shape == positions.shape and bool(torch.equal(key_positions, positions))
