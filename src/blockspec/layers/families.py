"""Base classes of the polymorphic config families that model parts are chosen from.

Each base names its family and the type used when a mapping has no `type` key. Concrete
configs subclass a base with `type_name=...`; plugins do the same from their own package.
"""

from __future__ import annotations

from typing import Any

from ..config import Config

__all__ = [
    "BlockConfig",
    "BlockSequenceConfig",
    "EmbeddingsConfig",
    "FeedForwardConfig",
    "HeadConfig",
    "InitializationConfig",
    "MixerConfig",
    "ModelConfig",
    "NormalizationConfig",
    "PeftConfig",
    "RotaryConfig",
]


class InitializationConfig(Config, family="initialization", default_type="normal"):
    """The initialization of a weight (`fill`, `zeros`, `ones`, `normal`, `uniform`, ...)."""


class PeftConfig(Config, family="peft", default_type="none"):
    """Parameter-efficient fine-tuning applied to the linears that enable `apply_peft`."""


class NormalizationConfig(Config, family="normalization", default_type="rms_norm"):
    """A normalization layer (`rms_norm`, `layer_norm`, `none`)."""


class RotaryConfig(Config, family="rotary", default_type="none"):
    """Rotary position embedding applied to queries and keys (`none`, `default`, `llama3`, ...)."""


class MixerConfig(Config, family="mixer", default_type="attention"):
    """The token-mixing part of a block (`attention`, ...)."""


class FeedForwardConfig(Config, family="mlp", default_type="mlp"):
    """The per-token part of a block (`mlp`, `moe`)."""


class BlockConfig(Config, family="block", default_type="transformer"):
    """One layer of a block sequence (`transformer`, ...)."""


class BlockSequenceConfig(Config, family="block_sequence", default_type="repeat"):
    """A stack of blocks (`repeat`, ...) sharing a hidden size."""


class EmbeddingsConfig(Config, family="embeddings", default_type="lm_embeddings"):
    """Token ids -> hidden states at the start of a language model."""


class HeadConfig(Config, family="head", default_type="lm_head"):
    """Hidden states -> logits at the end of a language model."""


class ModelConfig(Config, family="model", default_type="lm"):
    """A whole model; the root of a config file."""

    def build(self, device: Any = "cpu", dtype: Any = None, seed: int = 0) -> Any:
        """Build the `nn.Module` on the meta device, then allocate and initialize it on `device`.

        `device="meta"` allocates nothing (call `blockspec.materialize` later); `dtype` (a
        torch dtype or its name) applies to floating-point parameters; `seed` fixes the
        initial values. Needs torch.
        """
        from ..build import build_model

        return build_model(self, device=device, dtype=dtype, seed=seed)
