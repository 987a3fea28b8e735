"""Rotary position embedding modules and the inverse frequencies of each rotary type.

The inverse frequencies follow the formulas of Hugging Face transformers 5
(`modeling_rope_utils`, and `compute_default_rope_parameters` of its Llama model), computed
in float32 in the same order, so converted checkpoints rotate queries and keys identically.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...build import register_module
from .config import (
    DefaultRotaryConfig,
    LinearRotaryConfig,
    Llama3RotaryConfig,
    NoRotaryConfig,
    YarnRotaryConfig,
    check_rotary_width,
    rotary_width,
)

__all__ = ["NoRotary", "Rotary", "inverse_frequencies"]

@register_module(NoRotaryConfig)
class NoRotary(nn.Module):
    """Identity: returns queries and keys unchanged."""

    def __init__(self, config: NoRotaryConfig, *, head_size: int) -> None:
        super().__init__()
        self.config = config
        self.head_size = head_size

    def forward(self, query: torch.Tensor, key: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return query, key


@register_module(DefaultRotaryConfig)
class Rotary(nn.Module):
    """Rotates the first `width` dimensions of each head by position-dependent angles.

    Dimension i (i < width / 2) rotates together with dimension i + width / 2 (the
    half-split pairing of GPT-NeoX and Hugging Face Llama) by the angle
    position * inverse_frequency[i]. cos and sin are computed in float32 from the
    positions of each call and multiplied by the type's attention factor (1 except for
    yarn). Computing them per call, rather than indexing a cached table, never reads a
    position back from the device, so the module runs on the meta device and under
    `torch.compile(fullgraph=True)`.
    """

    def __init__(self, config: DefaultRotaryConfig, *, head_size: int) -> None:
        super().__init__()
        check_rotary_width(config, head_size)
        self.config = config
        self.head_size = head_size
        self.width = rotary_width(config, head_size)
        self.register_buffer("inverse_frequency", torch.empty(self.width // 2, dtype=torch.float32), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """Compute the inverse frequencies on the buffer's current device."""
        device = self.inverse_frequency.device
        inverse_frequency, self.attention_factor = inverse_frequencies(self.config, self.width, device=device)
        self.inverse_frequency = inverse_frequency

    def _cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.inverse_frequency.dtype != torch.float32:
            # A dtype cast of the whole model (model.to(bfloat16)) reached the buffer; recompute in float32.
            self.reset_buffers()
        angles = positions.to(torch.float32)[:, None] * self.inverse_frequency[None, :]  # (seq, width / 2)
        return angles.cos() * self.attention_factor, angles.sin() * self.attention_factor

    def forward(self, query: torch.Tensor, key: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate `query` (batch, heads, seq, head_size) and `key` (batch, kv_heads, seq, head_size).

        `positions` (seq,) are the absolute positions of the sequence dimension.
        """
        cos, sin = self._cos_sin(positions)  # (seq, width / 2) each
        return self._rotate(query, cos, sin), self._rotate(key, cos, sin)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        cos = cos.to(x.dtype)
        sin = sin.to(x.dtype)
        rotated, passed = x[..., : self.width], x[..., self.width :]
        first, second = rotated.chunk(2, dim=-1)
        rotated = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
        if passed.shape[-1] == 0:
            return rotated
        return torch.cat((rotated, passed), dim=-1)

    def extra_repr(self) -> str:
        return f"type={self.config.type_name}, width={self.width}, head_size={self.head_size}"


# The subclasses differ only in their inverse frequencies, so they share the module.
register_module(LinearRotaryConfig)(Rotary)
register_module(Llama3RotaryConfig)(Rotary)
register_module(YarnRotaryConfig)(Rotary)


# ---------------------------------------------------------------------- inverse frequencies


def inverse_frequencies(
    config: DefaultRotaryConfig, width: int, *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, float]:
    """Return the float32 inverse frequencies (width / 2,) of a rotary config and its attention factor.

    The attention factor multiplies cos and sin; it is 1 for every type except yarn.
    """
    base = _default_inverse_frequencies(config.theta, width, device)
    if isinstance(config, LinearRotaryConfig):
        return base / config.factor, 1.0
    if isinstance(config, Llama3RotaryConfig):
        return _llama3_inverse_frequencies(config, base), 1.0
    if isinstance(config, YarnRotaryConfig):
        return _yarn_inverse_frequencies(config, width, device), _yarn_attention_factor(config)
    return base, 1.0


def _default_inverse_frequencies(theta: float, width: int, device: torch.device | str | None) -> torch.Tensor:
    exponents = torch.arange(0, width, 2, dtype=torch.int64, device=device).float() / width
    return 1.0 / (theta**exponents)


def _llama3_inverse_frequencies(config: Llama3RotaryConfig, inverse_frequency: torch.Tensor) -> torch.Tensor:
    context = config.original_context_length
    long_wavelength = context / config.low_frequency_factor  # above: divide by factor
    short_wavelength = context / config.high_frequency_factor  # below: keep
    wavelength = 2 * math.pi / inverse_frequency

    scaled = torch.where(wavelength > long_wavelength, inverse_frequency / config.factor, inverse_frequency)

    # In between, interpolate linearly in context / wavelength between scaled and kept.
    smooth = (context / wavelength - config.low_frequency_factor) / (
        config.high_frequency_factor - config.low_frequency_factor
    )
    smoothed = (1 - smooth) * scaled / config.factor + smooth * scaled
    is_medium = (wavelength >= short_wavelength) & (wavelength <= long_wavelength)
    return torch.where(is_medium, smoothed, scaled)


def _yarn_inverse_frequencies(config: YarnRotaryConfig, width: int, device: torch.device | str | None) -> torch.Tensor:
    wavelength_ratio = config.theta ** (torch.arange(0, width, 2, device=device).float() / width)
    extrapolated = 1.0 / wavelength_ratio
    interpolated = 1.0 / (config.factor * wavelength_ratio)

    low = _yarn_dimension_for(config.beta_fast, width, config.theta, config.original_context_length)
    high = _yarn_dimension_for(config.beta_slow, width, config.theta, config.original_context_length)
    if config.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, width - 1)
    if low == high:
        high += 0.001  # the ramp would divide by zero

    # The ramp is 0 for pairs that keep their frequency and 1 for fully interpolated ones.
    ramp = ((torch.arange(width // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1).to(device)
    kept = 1 - ramp
    return interpolated * (1 - kept) + extrapolated * kept


def _yarn_dimension_for(rotations: float, width: int, theta: float, context: int) -> float:
    """Return the (fractional) pair index whose wavelength fits `rotations` times into `context`."""
    return (width * math.log(context / (rotations * 2 * math.pi))) / (2 * math.log(theta))


def _yarn_attention_factor(config: YarnRotaryConfig) -> float:
    if config.attention_factor is not None:
        return config.attention_factor
    if config.mscale and config.mscale_all_dim:
        return _yarn_mscale(config.factor, config.mscale) / _yarn_mscale(config.factor, config.mscale_all_dim)
    return _yarn_mscale(config.factor, 1.0)


def _yarn_mscale(factor: float, coefficient: float) -> float:
    """Return 0.1 * coefficient * ln(factor) + 1 (`yarn_get_mscale` in transformers), or 1 when factor <= 1."""
    if factor <= 1:
        return 1.0
    return 0.1 * coefficient * math.log(factor) + 1.0
