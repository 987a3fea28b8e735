"""Tests of the rotary modules: inverse frequencies and rotations against transformers, buffers."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPTNeoXConfig, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from blockspec import (
    DefaultRotaryConfig,
    Llama3RotaryConfig,
    LinearRotaryConfig,
    NoRotaryConfig,
    YarnRotaryConfig,
)
from blockspec.build import materialize
from blockspec.layers.attention.rotary import NoRotary, Rotary, inverse_frequencies


def hf_config(head_size: int, rope_parameters: dict) -> LlamaConfig:
    """Return a transformers config with one head of `head_size` and the given rope parameters."""
    return LlamaConfig(
        hidden_size=head_size * 2,
        num_attention_heads=2,
        head_dim=head_size,
        max_position_embeddings=8192,
        rope_parameters=rope_parameters,
    )


# (blockspec rotary config, transformers rope_parameters), for head_size 64.
SCALED_CASES = [
    (LinearRotaryConfig(theta=10000.0, factor=4.0), {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}),
    (
        LinearRotaryConfig(theta=1000.0, factor=2.5, fraction=0.5),
        {"rope_type": "linear", "rope_theta": 1000.0, "factor": 2.5, "partial_rotary_factor": 0.5},
    ),
    (
        Llama3RotaryConfig(),
        {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    ),
    (
        Llama3RotaryConfig(theta=10000.0, factor=32.0, low_frequency_factor=2.0, high_frequency_factor=8.0, original_context_length=512),
        {
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 32.0,
            "low_freq_factor": 2.0,
            "high_freq_factor": 8.0,
            "original_max_position_embeddings": 512,
        },
    ),
    (
        YarnRotaryConfig(theta=10000.0, factor=4.0, original_context_length=2048),
        {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 2048},
    ),
    (
        YarnRotaryConfig(theta=1000000.0, factor=16.0, original_context_length=1024, beta_fast=16.0, beta_slow=2.0, truncate=False),
        {
            "rope_type": "yarn",
            "rope_theta": 1000000.0,
            "factor": 16.0,
            "original_max_position_embeddings": 1024,
            "beta_fast": 16.0,
            "beta_slow": 2.0,
            "truncate": False,
        },
    ),
    (
        YarnRotaryConfig(theta=10000.0, factor=40.0, original_context_length=4096, mscale=1.0, mscale_all_dim=0.707, fraction=0.5),
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "mscale": 1.0,
            "mscale_all_dim": 0.707,
            "partial_rotary_factor": 0.5,
        },
    ),
    (
        YarnRotaryConfig(theta=10000.0, factor=8.0, original_context_length=4096, attention_factor=1.5),
        {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 4096, "attention_factor": 1.5},
    ),
]


@pytest.mark.parametrize(("config", "rope_parameters"), SCALED_CASES, ids=lambda value: getattr(value, "type_name", None))
def test_rotary_scaled_frequencies_match_transformers(config, rope_parameters):
    head_size = 64
    expected, expected_factor = ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](hf_config(head_size, rope_parameters), "cpu")
    width = int(head_size * config.fraction)

    actual, factor = inverse_frequencies(config, width)

    assert actual.dtype == torch.float32
    assert actual.shape == (width // 2,)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=0)
    assert factor == pytest.approx(expected_factor, rel=1e-12)


@pytest.mark.parametrize(("theta", "head_size"), [(10000.0, 64), (500000.0, 128), (100.0, 16)])
def test_rotary_default_frequencies_match_transformers(theta, head_size):
    expected, expected_factor = LlamaRotaryEmbedding.compute_default_rope_parameters(
        hf_config(head_size, {"rope_type": "default", "rope_theta": theta})
    )

    actual, factor = inverse_frequencies(DefaultRotaryConfig(theta=theta), head_size)

    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=0)
    assert factor == expected_factor == 1.0


def test_rotary_partial_frequencies_match_gpt_neox():
    config = GPTNeoXConfig(hidden_size=128, num_attention_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})
    expected, _ = GPTNeoXRotaryEmbedding.compute_default_rope_parameters(config)

    actual, _ = inverse_frequencies(DefaultRotaryConfig(fraction=0.25), 16)

    assert actual.shape == (8,)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize(("config", "rope_parameters"), [SCALED_CASES[4], SCALED_CASES[2]], ids=["yarn", "llama3"])
def test_rotary_rotation_matches_transformers(config, rope_parameters):
    head_size = 64
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 4, 7, head_size, generator=generator)  # (batch, heads, seq, head_size)
    key = torch.randn(2, 2, 7, head_size, generator=generator)
    positions = torch.tensor([0, 1, 2, 100, 2047, 3000, 9000])
    hf_rotary = LlamaRotaryEmbedding(hf_config(head_size, rope_parameters))
    cos, sin = hf_rotary(query, positions[None, :])
    expected_query, expected_key = apply_rotary_pos_emb(query, key, cos, sin)

    actual_query, actual_key = Rotary(config, head_size=head_size)(query, key, positions)

    torch.testing.assert_close(actual_query, expected_query, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(actual_key, expected_key, rtol=1e-5, atol=1e-5)


def test_rotary_partial_rotation_leaves_rest():
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(1, 2, 5, 16, generator=generator)
    key = torch.randn(1, 1, 5, 16, generator=generator)
    positions = torch.arange(5)
    hf = GPTNeoXConfig(hidden_size=32, num_attention_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})
    cos, sin = GPTNeoXRotaryEmbedding(hf)(query, positions[None, :])
    expected_query, expected_key = apply_rotary_pos_emb(query[..., :8], key[..., :8], cos, sin)

    actual_query, actual_key = Rotary(DefaultRotaryConfig(fraction=0.5), head_size=16)(query, key, positions)

    torch.testing.assert_close(actual_query[..., :8], expected_query, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(actual_key[..., :8], expected_key, rtol=1e-5, atol=1e-6)
    assert torch.equal(actual_query[..., 8:], query[..., 8:])
    assert torch.equal(actual_key[..., 8:], key[..., 8:])


def test_rotary_preserves_dot_products_of_shifted_positions():
    # Rotary makes q . k depend only on the distance between positions.
    rotary = Rotary(DefaultRotaryConfig(theta=100.0), head_size=8)
    generator = torch.Generator().manual_seed(2)
    query = torch.randn(1, 1, 1, 8, generator=generator)
    key = torch.randn(1, 1, 1, 8, generator=generator)

    near_query, _ = rotary(query, key, torch.tensor([5]))
    _, near_key = rotary(query, key, torch.tensor([2]))
    far_query, _ = rotary(query, key, torch.tensor([1005]))
    _, far_key = rotary(query, key, torch.tensor([1002]))

    near = (near_query * near_key).sum()
    far = (far_query * far_key).sum()
    torch.testing.assert_close(near, far, rtol=1e-4, atol=1e-5)


def test_rotary_long_positions_use_exact_angles():
    rotary = Rotary(DefaultRotaryConfig(theta=10000.0), head_size=8)
    query = torch.ones(1, 1, 2, 8)
    positions = torch.tensor([10, 100_005])

    actual_query, _ = rotary(query, query, positions)

    angles = positions[:, None].float() * rotary.inverse_frequency[None, :]
    expected_first_half = angles.cos() - angles.sin()  # x1 cos - x2 sin with x = 1
    torch.testing.assert_close(actual_query[0, 0, :, :4], expected_first_half)


def test_rotary_meta_build_materializes_buffers():
    config = YarnRotaryConfig(factor=4.0, original_context_length=256)
    with torch.device("meta"):
        rotary = Rotary(config, head_size=32)
    assert rotary.inverse_frequency.is_meta

    materialize(rotary, device="cpu")

    reference = Rotary(config, head_size=32)
    assert torch.equal(rotary.inverse_frequency, reference.inverse_frequency)
    assert rotary.attention_factor == pytest.approx(0.1 * math.log(4.0) + 1)
    assert dict(rotary.named_buffers()).keys() == {"inverse_frequency"}
    assert rotary.state_dict() == {}


def test_rotary_runs_on_meta():
    with torch.device("meta"):
        rotary = Rotary(DefaultRotaryConfig(), head_size=16)
        query = torch.empty(2, 4, 5, 16)
        rotated, _ = rotary(query, query, torch.arange(5))
    assert rotated.is_meta
    assert rotated.shape == (2, 4, 5, 16)


def test_rotary_recomputes_after_dtype_cast():
    rotary = Rotary(DefaultRotaryConfig(), head_size=16)
    reference = Rotary(DefaultRotaryConfig(), head_size=16)
    rotary.to(torch.bfloat16)
    assert rotary.inverse_frequency.dtype == torch.bfloat16
    query = torch.randn(1, 1, 3, 16)
    positions = torch.tensor([0, 1000, 2000])

    actual, _ = rotary(query, query, positions)

    expected, _ = reference(query, query, positions)
    assert rotary.inverse_frequency.dtype == torch.float32
    assert torch.equal(actual, expected)


def test_rotary_none_is_identity():
    rotary = NoRotary(NoRotaryConfig(), head_size=8)
    query = torch.randn(1, 2, 3, 8)
    key = torch.randn(1, 1, 3, 8)

    actual_query, actual_key = rotary(query, key, torch.arange(3))

    assert actual_query is query
    assert actual_key is key


def test_rotary_rejects_odd_width():
    with pytest.raises(ValueError, match=r"int\(12 \* 0\.25\) = 3 must be even"):
        Rotary(DefaultRotaryConfig(fraction=0.25), head_size=12)
