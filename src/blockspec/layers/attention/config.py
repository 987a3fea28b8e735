"""Configs of the attention mixer and of the rotary position embedding family."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from ...config.base import field_error
from ..families import MixerConfig, NormalizationConfig, PeftConfig, RotaryConfig
from ..initialization.config import (
    DepthScaledNormalInitializationConfig,
    NormalInitializationConfig,
    ZerosInitializationConfig,
)
from ..linear.config import LinearConfig

__all__ = [
    "AttentionConfig",
    "DefaultRotaryConfig",
    "Llama3RotaryConfig",
    "LinearRotaryConfig",
    "NoRotaryConfig",
    "YarnRotaryConfig",
]


# ---------------------------------------------------------------------- rotary family


class NoRotaryConfig(RotaryConfig, type_name="none"):
    """No rotary embedding: queries and keys are used as projected."""


class DefaultRotaryConfig(RotaryConfig, type_name="default"):
    """Rotary position embedding (RoFormer) with inverse frequencies theta^(-2i/d).

    Dimensions are paired in the half-split convention of GPT-NeoX and Hugging Face Llama:
    dimension i rotates with dimension i + d/2, d being the rotated width.
    """

    theta: float = Field(10000.0, gt=0)
    """Base of the geometric progression of wavelengths."""
    fraction: float = Field(1.0, gt=0, le=1)
    """Fraction of each head's dimensions that is rotated (partial rotary); the rest passes
    unchanged. The rotated width, int(head_size * fraction), must be even."""


class LinearRotaryConfig(DefaultRotaryConfig, type_name="linear"):
    """Rotary embedding with position interpolation: every inverse frequency divided by `factor`."""

    factor: float = Field(gt=0)
    """Divisor of every inverse frequency (the context extension ratio)."""


class Llama3RotaryConfig(DefaultRotaryConfig, type_name="llama3"):
    """Rotary embedding with the frequency-dependent scaling of Llama 3.1.

    Wavelengths longer than original_context_length / low_frequency_factor are divided by
    `factor`, wavelengths shorter than original_context_length / high_frequency_factor are
    kept, and those in between are interpolated smoothly. Defaults are Llama 3.1's values.
    """

    theta: float = Field(500000.0, gt=0)
    """Base of the geometric progression of wavelengths."""
    factor: float = Field(8.0, gt=0)
    """Divisor of the low (long-wavelength) inverse frequencies."""
    low_frequency_factor: float = Field(1.0, gt=0)
    """original_context_length / low_frequency_factor is the wavelength above which frequencies are fully scaled."""
    high_frequency_factor: float = Field(4.0, gt=0)
    """original_context_length / high_frequency_factor is the wavelength below which frequencies are kept."""
    original_context_length: int = Field(8192, gt=0)
    """Context length, in tokens, that the model was pretrained with."""

    @model_validator(mode="after")
    def _check_frequency_factors(self):
        if self.high_frequency_factor <= self.low_frequency_factor:
            raise field_error(
                ("high_frequency_factor",),
                "invalid_frequency_factors",
                f"high_frequency_factor must be greater than low_frequency_factor={self.low_frequency_factor}, "
                f"got {self.high_frequency_factor}; Llama 3.1 uses low 1.0 and high 4.0",
                self.high_frequency_factor,
            )
        return self


class YarnRotaryConfig(DefaultRotaryConfig, type_name="yarn"):
    """YaRN rotary scaling: interpolated low frequencies, kept high frequencies, a linear
    ramp between them, and cos/sin multiplied by an attention factor."""

    factor: float = Field(gt=0)
    """Context extension ratio; low frequencies are divided by it."""
    original_context_length: int = Field(gt=0)
    """Context length, in tokens, that the model was pretrained with."""
    beta_fast: float = Field(32.0, gt=0)
    """Number of rotations over original_context_length above which a dimension keeps its frequency."""
    beta_slow: float = Field(1.0, gt=0)
    """Number of rotations over original_context_length below which a dimension is fully interpolated."""
    attention_factor: float | None = Field(None, gt=0)
    """Multiplier of cos and sin; None means computed from factor (and mscale, mscale_all_dim
    when both are set) as 0.1 * m * ln(factor) + 1."""
    mscale: float | None = None
    """DeepSeek's mscale: numerator coefficient m of the computed attention factor; None means 1."""
    mscale_all_dim: float | None = None
    """DeepSeek's mscale_all_dim: denominator coefficient of the computed attention factor; None means
    no denominator. Used only together with mscale."""
    truncate: bool = True
    """Whether the bounds of the ramp are rounded outward to whole dimensions."""


# ---------------------------------------------------------------------- attention


def _normal_weights(std: float) -> dict[str, Any]:
    return {"type": "normal", "std": std}


def _depth_scaled_weights(std: float) -> dict[str, Any]:
    return {"type": "depth_scaled_normal", "std": std}


class AttentionConfig(MixerConfig, type_name="attention"):
    """Multi-head self-attention with grouped key/value heads, optional sliding window,
    query/key normalization, logit soft-capping and rotary position embedding.

    The query, key and value projections are three separate linear layers (no fused QKV
    weight), so each one's `apply_peft`, initialization and lr scale apply on its own.
    The hidden size is not a field: it comes from the enclosing block sequence, and the
    checks that need it (head_size derivable, even rotated width) run when the model is built.
    """

    heads: int = Field(gt=0)
    """Number of query heads."""
    head_groups: int | None = Field(None, gt=0)
    """Number of key/value heads, each shared by heads / head_groups query heads (GQA; 1 is
    MQA). Must divide heads. None means heads (no sharing)."""
    head_size: int | None = Field(None, gt=0)
    """Width of each head; may differ from hidden_size / heads. None means hidden_size / heads,
    which must then divide evenly."""
    causal: bool = True
    """Whether a query attends only to keys at its own or earlier positions."""
    window_size: int | None = Field(None, gt=0)
    """Sliding window, in tokens: a query at position i attends to keys at positions j with
    i - window_size < j <= i, so window_size keys including its own (the `sliding_window`
    convention of Mistral, Qwen2 and Gemma 2 in Hugging Face transformers 5). None means the
    full context. Requires causal."""
    query_norm: NormalizationConfig | None = None
    """Normalization of the queries before the rotary embedding (Qwen3, OLMo 2); None means none."""
    key_norm: NormalizationConfig | None = None
    """Normalization of the keys before the rotary embedding (Qwen3, OLMo 2); None means none."""
    qk_norm_per_head: bool = True
    """Whether query_norm and key_norm normalize each head over head_size (Qwen3) or the whole
    projection over heads * head_size (OLMo 2)."""
    softmax_scale: float | None = Field(None, gt=0)
    """Multiplier of the query-key dot products before the softmax; None means 1 / sqrt(head_size)."""
    soft_cap: float | None = Field(None, gt=0)
    """Attention logit soft-capping (Gemma 2): scaled logits s become soft_cap * tanh(s / soft_cap).
    None means no capping."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability on the attention weights, in training mode only."""
    rotary: RotaryConfig = NoRotaryConfig()
    """Rotary position embedding applied to queries and keys."""
    query: LinearConfig = LinearConfig()
    """Query projection, hidden_size -> heads * head_size (default: no bias, normal(0.02), peft applied)."""
    key: LinearConfig = LinearConfig()
    """Key projection, hidden_size -> head_groups * head_size (default: no bias, normal(0.02), no peft)."""
    value: LinearConfig = LinearConfig()
    """Value projection, hidden_size -> head_groups * head_size (default: no bias, normal(0.02), peft applied)."""
    output: LinearConfig = LinearConfig()
    """Output projection, heads * head_size -> hidden_size (default: no bias, depth_scaled_normal(0.02), no peft)."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of every parameter of this mixer; None means 1."""
    add_linear_biases: bool | None = None
    """Shortcut: sets `bias` of query, key, value and output where they leave it unset."""
    init_std: float | None = Field(None, ge=0)
    """Shortcut: normal(init_std) weights for query, key and value and depth_scaled_normal(init_std)
    for output, where they leave weight_initialization unset."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "add_linear_biases": {"query.bias": None, "key.bias": None, "value.bias": None, "output.bias": None},
        "init_std": {
            "query.weight_initialization": _normal_weights,
            "key.weight_initialization": _normal_weights,
            "value.weight_initialization": _normal_weights,
            "output.weight_initialization": _depth_scaled_weights,
        },
    }

    @model_validator(mode="after")
    def _check_and_fill_defaults(self):
        self._check_head_groups()
        self._check_window()
        if self.head_size is not None:
            check_rotary_width(self.rotary, self.head_size)
        for name in ("query", "key", "value", "output"):
            initialization = DepthScaledNormalInitializationConfig(std=0.02) if name == "output" else NormalInitializationConfig(std=0.02)
            self._fill_defaults(
                name,
                bias=False,
                weight_initialization=initialization,
                bias_initialization=ZerosInitializationConfig(),
                weight_decay=True,
                apply_peft=name in ("query", "value"),
            )
        return self

    def _check_head_groups(self) -> None:
        if self.head_groups is not None and self.heads % self.head_groups != 0:
            divisors = [n for n in range(1, self.heads + 1) if self.heads % n == 0]
            raise field_error(
                ("head_groups",),
                "invalid_head_groups",
                f"head_groups must divide heads={self.heads}, got {self.head_groups}; "
                f"use one of {divisors} (1 for multi-query, {self.heads} for no sharing)",
                self.head_groups,
            )

    def _check_window(self) -> None:
        if self.window_size is not None and not self.causal:
            raise field_error(
                ("window_size",),
                "invalid_window",
                "a sliding window requires causal attention; set causal: true or remove window_size",
                self.window_size,
            )

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads (head_groups, or heads when unset)."""
        return self.head_groups if self.head_groups is not None else self.heads

    def num_parameters(self, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
        """Return the parameter count in a stream of width `hidden_size`, LoRA adapters of `peft` included."""
        from ..counting import count_parameters

        config = self.resolved
        head_size = config.head_size_for(hidden_size)
        query_width = config.heads * head_size
        key_value_width = config.kv_heads * head_size
        linears = [
            (config.query, hidden_size, query_width),
            (config.key, hidden_size, key_value_width),
            (config.value, hidden_size, key_value_width),
            (config.output, query_width, hidden_size),
        ]
        count = sum(linear.num_parameters(in_features=fan_in, out_features=fan_out, peft=peft) for linear, fan_in, fan_out in linears)
        for norm, width in [(config.query_norm, query_width), (config.key_norm, key_value_width)]:
            if norm is not None:
                count += count_parameters(norm, hidden_size=head_size if config.qk_norm_per_head else width)
        return count

    def width_defaults(self, hidden_size: int) -> dict[str, int]:
        """Return the defaults that follow from the hidden size: head_size and head_groups.

        A parent that knows the hidden size gives them with `_fill_defaults`, so the
        resolved config shows the head layout a build uses.
        """
        defaults = {"head_groups": self.heads}
        if hidden_size % self.heads == 0:
            defaults["head_size"] = hidden_size // self.heads
        return defaults

    def head_size_for(self, hidden_size: int) -> int:
        """Return head_size, deriving it from `hidden_size` when unset.

        Raises ValueError when head_size is unset and heads does not divide hidden_size.
        """
        if self.head_size is not None:
            return self.head_size
        if hidden_size % self.heads != 0:
            raise ValueError(
                f"head_size: hidden_size={hidden_size} is not divisible by heads={self.heads}, so head_size "
                f"cannot be derived; set head_size explicitly or choose heads that divide {hidden_size}"
            )
        return hidden_size // self.heads

    def check_hidden_size(self, hidden_size: int) -> int:
        """Return the head size for `hidden_size` after checking the fields that depend on it.

        Raises a ValidationError located at `head_size` (heads does not divide hidden_size
        and head_size is unset) or at `rotary.fraction` (odd rotated width), so a parent
        that has the hidden size can call it from its own validator and report the full path.
        """
        if self.head_size is None and hidden_size % self.heads != 0:
            raise field_error(
                ("head_size",),
                "invalid_head_size",
                f"head_size is unset and hidden_size={hidden_size} is not divisible by heads={self.heads}; "
                f"set head_size explicitly or choose heads that divide {hidden_size}",
                self.head_size,
            )
        head_size = self.head_size_for(hidden_size)
        check_rotary_width(self.rotary, head_size)
        return head_size


def rotary_width(rotary: RotaryConfig, head_size: int) -> int:
    """Return the number of rotated dimensions per head: int(head_size * fraction), 0 for `none`."""
    fraction = getattr(rotary, "fraction", None)
    if fraction is None:
        return 0
    # Truncation matches `int(head_dim * partial_rotary_factor)` in transformers' rope utils.
    return int(head_size * fraction)


def check_rotary_width(rotary: RotaryConfig, head_size: int) -> None:
    """Raise a ValidationError at `rotary.fraction` unless the rotated width is even and positive."""
    fraction = getattr(rotary, "fraction", None)
    if fraction is None:
        return
    width = rotary_width(rotary, head_size)
    if width == 0 or width % 2 != 0:
        raise field_error(
            ("rotary", "fraction"),
            "invalid_rotary_fraction",
            f"the rotated width int(head_size * fraction) = int({head_size} * {fraction}) = {width} must be even "
            f"and positive because dimensions rotate in pairs; choose a fraction that gives an even width, "
            f"e.g. {_even_fraction(head_size, fraction)} (rotates {_even_width(head_size, fraction)} dimensions)",
            fraction,
        )


def _even_width(head_size: int, fraction: float) -> int:
    return max(2, int(head_size * fraction) // 2 * 2)


def _even_fraction(head_size: int, fraction: float) -> float:
    return _even_width(head_size, fraction) / head_size
