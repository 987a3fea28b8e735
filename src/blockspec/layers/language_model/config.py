"""Configs of the language model (`lm`): embeddings (`lm_embeddings`) -> transformer -> head (`lm_head`)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, ValidationError, model_validator

from ...config.base import _set_where_unset, field_error, relocate
from ..counting import count_parameters
from ..families import (
    BlockSequenceConfig,
    EmbeddingsConfig,
    HeadConfig,
    ModelConfig,
    NormalizationConfig,
    PeftConfig,
)
from ..initialization.config import NormalInitializationConfig
from ..linear.config import NoPeftConfig
from ..normalization.config import RMSNormConfig
from ..parameter.config import ParameterConfig

__all__ = ["LanguageModelConfig", "LanguageModelEmbeddingsConfig", "LanguageModelHeadConfig"]

DEFAULT_INIT_STD = 0.02


def _normal(std: float) -> dict[str, Any]:
    return {"type": "normal", "std": std}


class LanguageModelEmbeddingsConfig(EmbeddingsConfig, type_name="lm_embeddings"):
    """Token embedding table, plus learned absolute position embeddings when `position_embeddings` is set."""

    vocab_size: int = Field(gt=0)
    """Number of rows of the embedding table (token ids are in [0, vocab_size))."""
    position_embeddings: int | None = Field(None, gt=0)
    """Number of learned absolute positions (GPT-2: 1024); None means no position embeddings."""
    scale: float | None = Field(None, gt=0)
    """Multiplier of the embeddings (Gemma: sqrt(hidden_size)); None means 1."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability on the embeddings (training only)."""
    word_weight: ParameterConfig = ParameterConfig()
    """The (vocab_size, hidden_size) token embedding table (default init: normal(0.02))."""
    position_weight: ParameterConfig = ParameterConfig()
    """The (position_embeddings, hidden_size) position table (default init: normal(0.02)); unused without position_embeddings."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of the embedding tables; None means 1."""
    init_std: float | None = Field(None, ge=0)
    """Shortcut: normal(init_std) initialization of both tables where they leave it unset."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "init_std": {"word_weight.initialization": _normal, "position_weight.initialization": _normal},
    }

    @model_validator(mode="after")
    def _fill_weight_defaults(self):
        normal = NormalInitializationConfig(std=DEFAULT_INIT_STD)
        self._fill_defaults("word_weight", initialization=normal, weight_decay=True)
        self._fill_defaults("position_weight", initialization=normal, weight_decay=True)
        return self

    def num_parameters(self, *, hidden_size: int) -> int:
        """Return the number of parameters of the embedding tables."""
        return (self.vocab_size + (self.position_embeddings or 0)) * hidden_size


class LanguageModelHeadConfig(HeadConfig, type_name="lm_head"):
    """Final normalization and the output projection to vocabulary logits."""

    normalization: NormalizationConfig = RMSNormConfig()
    """Normalization of the last hidden states before the output projection."""
    output_weight: ParameterConfig = ParameterConfig()
    """The (vocab_size, hidden_size) output projection (default init: normal(0.02)); must stay unset with tied embeddings."""
    logits_scale: float | None = None
    """Multiplier of the logits (before the soft cap); None means 1."""
    logit_soft_cap: float | None = Field(None, gt=0)
    """Final logit soft-capping (Gemma 2): logits become cap * tanh(logits / cap); None means none."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of the head's parameters; None means 1."""
    init_std: float | None = Field(None, ge=0)
    """Shortcut: normal(init_std) initialization of `output_weight` if it leaves it unset."""

    shortcuts: ClassVar[dict[str, Any]] = {"init_std": {"output_weight.initialization": _normal}}

    @model_validator(mode="after")
    def _fill_weight_defaults(self):
        self._fill_defaults("output_weight", initialization=NormalInitializationConfig(std=DEFAULT_INIT_STD), weight_decay=True)
        return self

    def num_parameters(self, *, hidden_size: int, vocab_size: int, tied: bool) -> int:
        """Return the number of parameters of the head; a tied output weight is counted by the embeddings."""
        count = count_parameters(self.normalization, hidden_size=hidden_size)
        return count if tied else count + vocab_size * hidden_size


class LanguageModelConfig(ModelConfig, type_name="lm"):
    """A causal language model: embeddings -> transformer -> head, trained with next-token cross entropy."""

    hidden_size: int = Field(gt=0)
    """Width of the residual stream."""
    tied_embeddings: bool = False
    """Whether the output projection reuses the token embedding table (one shared parameter)."""
    full_precision_residual: bool = False
    """Whether the residual stream is kept in float32 when the model runs in a lower precision."""
    embeddings: EmbeddingsConfig
    """Token ids -> hidden states (type `lm_embeddings` when `type` is omitted)."""
    transformer: BlockSequenceConfig
    """The stack of blocks (type `repeat` when `type` is omitted)."""
    head: HeadConfig = LanguageModelHeadConfig()
    """Hidden states -> logits (type `lm_head` when `type` is omitted)."""
    peft: PeftConfig = NoPeftConfig()
    """Parameter-efficient fine-tuning (`none` or `lora`) applied to the linears whose `apply_peft` is on."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of every parameter; None means 1."""
    init_std: float | None = Field(None, ge=0)
    """Shortcut: std of the default weight initializations everywhere (embeddings, blocks, head) where unset."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "init_std": {"embeddings.init_std": None, "transformer.init_std": None},
    }

    @classmethod
    def _expand_shortcuts(cls, data: dict[str, Any]) -> dict[str, Any]:
        # A tied model has no output weight of its own, so init_std reaches the head only when untied.
        init_std = data.get("init_std")
        if init_std is not None and data.get("tied_embeddings") is not True:
            data = _set_where_unset(cls, data, ["head", "init_std"], init_std)
        return super()._expand_shortcuts(data)

    @model_validator(mode="after")
    def _check_parts(self):
        sequence_width = getattr(self.transformer, "hidden_size", None)
        if sequence_width is not None and sequence_width != self.hidden_size:
            raise field_error(
                ("transformer", "hidden_size"),
                "hidden_size_mismatch",
                f"differs from the model's hidden_size={self.hidden_size}, "
                "and the model has no projection between them; remove transformer.hidden_size or make them equal",
                sequence_width,
            )
        check_width = getattr(self.transformer, "check_hidden_size", None)
        if check_width is not None:
            try:
                check_width(self.hidden_size)
            except ValidationError as error:
                raise relocate(error, ("transformer",)) from None
        with_width_defaults = getattr(self.transformer, "with_width_defaults", None)
        if with_width_defaults is not None:
            object.__setattr__(self, "transformer", with_width_defaults(self.hidden_size))
        if self.tied_embeddings and isinstance(self.head, LanguageModelHeadConfig) and self.head.output_weight.to_dict():
            raise field_error(
                ("head", "output_weight"),
                "tied_output_weight",
                "must stay unset because with tied_embeddings the output projection is the embedding table "
                "(embeddings.word_weight); configure that one or set tied_embeddings: false",
                self.head.output_weight.to_dict(),
            )
        if self.tied_embeddings and isinstance(self.head, LanguageModelHeadConfig):
            # The head's output weight is unused, so drop its defaults: a resolved dump then
            # leaves it empty and loads back without tripping the check above.
            object.__setattr__(self, "head", self.head.model_copy(update={"output_weight": ParameterConfig()}))
        return self

    @property
    def vocab_size(self) -> int:
        """Number of tokens of the vocabulary (from the embeddings)."""
        return self.embeddings.vocab_size

    def num_parameters(self) -> int:
        """Return the number of parameters of the built model, computed from the config alone.

        A tied output weight and shared blocks are counted once, as `model.parameters()` yields
        them, and the LoRA adapters of `peft` are included.
        """
        count = count_parameters(self.embeddings, hidden_size=self.hidden_size)
        count += count_parameters(self.transformer, hidden_size=self.hidden_size, peft=self.peft)
        count += self.head.num_parameters(hidden_size=self.hidden_size, vocab_size=self.vocab_size, tied=self.tied_embeddings)
        return count
