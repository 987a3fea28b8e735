"""Small test-only config families that exercise the config machinery without real layers."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from blockspec.config import Config


class ToyInitConfig(Config, family="toy_init", default_type="toy_normal"):
    """Initialization family of the toys."""


class ToyNormalConfig(ToyInitConfig, type_name="toy_normal"):
    std: float = 0.02
    """Standard deviation."""


class ToyFillConfig(ToyInitConfig, type_name="toy_fill"):
    value: float
    """Value of every element."""


class ToyLinearConfig(Config):
    bias: bool | None = None
    """Whether to add a bias; None means the owner's default."""
    init: ToyInitConfig | None = None
    """Weight initialization; None means the owner's default."""


class ToyMixerConfig(Config, family="toy_mixer", default_type="toy_attention"):
    """Mixer family of the toys."""


class ToyAttentionConfig(ToyMixerConfig, type_name="toy_attention"):
    heads: int = Field(8, gt=0)
    """Number of heads."""
    head_groups: int | None = None
    """Number of key/value heads; None means heads."""
    query: ToyLinearConfig = ToyLinearConfig()
    """Query projection."""
    output: ToyLinearConfig = ToyLinearConfig()
    """Output projection."""
    add_biases: bool | None = None
    """Shortcut: bias of every projection."""
    init_std: float | None = None
    """Shortcut: std of every projection's normal initialization."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "add_biases": {"query.bias": None, "output.bias": None},
        "init_std": {
            "query.init": lambda std: {"type": "toy_normal", "std": std},
            "output.init": lambda std: {"type": "toy_normal", "std": std / 2},
        },
    }

    @model_validator(mode="after")
    def _defaults_and_checks(self):
        if self.head_groups is not None and self.heads % self.head_groups != 0:
            raise ValueError(f"head_groups={self.head_groups} must divide heads={self.heads}")
        self._fill_defaults("query", bias=True, init=ToyNormalConfig(std=0.02))
        self._fill_defaults("output", bias=False, init=ToyFillConfig(value=0.0))
        return self


class ToyMambaConfig(ToyMixerConfig, type_name="toy_mamba"):
    state_size: int = 16
    """State size."""
    label: str = "mamba"
    """A free-form string, for string round trips."""


class ToyBlockConfig(Config):
    mixer: ToyMixerConfig = ToyAttentionConfig()
    """Token mixer."""
    dropout: float = 0.0
    """Dropout probability."""
    activation: Literal["silu", "gelu"] = "silu"
    """Activation."""
    init_std: float | None = None
    """Shortcut forwarded to the mixer."""

    shortcuts: ClassVar[dict[str, Any]] = {"init_std": {"mixer.init_std": None}}


class ToyModelConfig(Config):
    hidden_size: int = 64
    """Width of the residual stream."""
    blocks: list[ToyBlockConfig] = []
    """The blocks, in order."""
    named: dict[str, ToyBlockConfig] = {}
    """Blocks by name."""
    init_std: float | None = None
    """Shortcut forwarded to every block."""

    shortcuts: ClassVar[dict[str, Any]] = {"init_std": {"blocks.*.init_std": None, "named.*.init_std": None}}
