"""The transformer block and the `repeat` block sequence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...build import build_module, register_module
from ..families import PeftConfig
from .config import RepeatSequenceConfig, TransformerBlockConfig

__all__ = ["RepeatSequence", "TransformerBlock"]


def _scale(value: float | None) -> float:
    return 1.0 if value is None else value


@register_module(TransformerBlockConfig)
class TransformerBlock(nn.Module):
    """x + post_norm(mixer(norm(x))), then x + post_norm(mlp(norm(x))); post norms are optional.

    With `full_precision_residual` the residual stream `x` is float32: each branch gets its
    input cast to the dtype of the block's parameters and its output cast back to float32.
    """

    def __init__(
        self,
        config: TransformerBlockConfig,
        *,
        hidden_size: int,
        layer_index: int = 0,
        num_layers: int = 1,
        lr_scale: float = 1.0,
        peft: PeftConfig | None = None,
        full_precision_residual: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.layer_index = layer_index
        self.full_precision_residual = full_precision_residual
        lr_scale = lr_scale * _scale(config.lr_scale)
        branch_args = {"hidden_size": hidden_size, "layer_index": layer_index, "num_layers": num_layers, "lr_scale": lr_scale, "peft": peft}
        norm_args = {"hidden_size": hidden_size, "lr_scale": lr_scale}

        self.mixer_normalization = build_module(config.normalization, **norm_args)
        self.mixer = build_module(config.mixer, **branch_args)
        self.post_mixer_normalization = _optional_norm(config.post_mixer_normalization, norm_args)
        self.mlp_normalization = build_module(config.normalization, **norm_args)
        self.mlp = build_module(config.mlp, **branch_args)
        self.post_mlp_normalization = _optional_norm(config.post_mlp_normalization, norm_args)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor, cache: Any = None) -> torch.Tensor:
        """Apply the block to `x` (batch, seq, hidden) at absolute `positions` (seq,)."""
        dtype = self._compute_dtype(x)

        mixed = self.mixer(self.mixer_normalization(x).to(dtype), positions=positions, cache=cache)
        if self.post_mixer_normalization is not None:
            mixed = self.post_mixer_normalization(mixed)
        x = x + self.dropout(mixed).to(x.dtype)

        transformed = self.mlp(self.mlp_normalization(x).to(dtype))
        if self.post_mlp_normalization is not None:
            transformed = self.post_mlp_normalization(transformed)
        return x + self.dropout(transformed).to(x.dtype)

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        if not self.full_precision_residual:
            return x.dtype
        for parameter in self.mixer.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return x.dtype


def _optional_norm(config: Any, norm_args: dict[str, Any]) -> nn.Module | None:
    return None if config is None else build_module(config, **norm_args)


class _SharedLayerCache:
    """A view of a KV cache that sends every layer lookup to one fixed layer index.

    A shared block runs at several depths with one module, so it has one layer_index. Each
    later occurrence gets this view, so that it reads and writes the cache of its own depth.
    """

    def __init__(self, cache: Any, layer_index: int) -> None:
        self._cache = cache
        self._layer_index = layer_index

    def layer(self, layer_index: int, **kwargs: Any) -> Any:
        return self._cache.layer(self._layer_index, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)


@register_module(RepeatSequenceConfig)
class RepeatSequence(nn.Module):
    """The layers of a `repeat` sequence, applied in order; shared blocks are one module object.

    After each forward, `aux_losses` holds the auxiliary losses of every layer summed by
    name (a shared block contributes once per occurrence).
    """

    def __init__(
        self,
        config: RepeatSequenceConfig,
        *,
        hidden_size: int | None = None,
        lr_scale: float = 1.0,
        peft: PeftConfig | None = None,
        full_precision_residual: bool | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size or hidden_size
        if self.hidden_size is None:
            raise ValueError("RepeatSequence needs a hidden size: set hidden_size in its config or pass hidden_size=...")
        full_precision = config.full_precision_residual
        if full_precision is None:
            full_precision = bool(full_precision_residual)
        lr_scale = lr_scale * _scale(config.lr_scale)

        names = config.layer_block_names()
        shared: dict[str, nn.Module] = {}
        layers = []
        self._reused = []  # per layer: whether it reuses the module of an earlier layer
        # Applying an override validates the layer's block again, which leaves its parent
        # defaults unfilled, so every layer config is resolved here (a no-op for the others).
        for index, layer_config in enumerate(block.resolved for block in config.layer_configs()):
            name = names[index]
            self._reused.append(name in shared)
            if name in shared:
                layers.append(shared[name])
                continue
            layer = build_module(
                layer_config,
                hidden_size=self.hidden_size,
                layer_index=index,
                num_layers=config.num_layers,
                lr_scale=lr_scale,
                peft=peft,
                full_precision_residual=full_precision,
            )
            if name in config.shared_blocks:
                shared[name] = layer
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self._aux_modules = [[module for module in layer.modules() if hasattr(module, "aux_losses")] for layer in layers]
        self.aux_losses: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor, cache: Any = None) -> torch.Tensor:
        """Apply every layer to `x` (batch, seq, hidden) at absolute `positions` (seq,)."""
        aux_losses: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.layers):
            layer_cache = cache
            if cache is not None and self._reused[index]:
                layer_cache = _SharedLayerCache(cache, index)
            x = layer(x, positions=positions, cache=layer_cache)
            for module in self._aux_modules[index]:
                for name, loss in module.aux_losses.items():
                    aux_losses[name] = aux_losses[name] + loss if name in aux_losses else loss
        self.aux_losses = aux_losses
        return x
