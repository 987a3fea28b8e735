"""Tests of the Attention module against an explicit softmax(Q K^T * scale + mask) V computation."""

from __future__ import annotations

import math

import pytest
import torch

from blockspec import AttentionConfig, ConfigError, LoraConfig
from blockspec.build import materialize, parameter_spec
from blockspec.generation import KVCache
from blockspec.layers.attention.module import Attention, attention_mask

HIDDEN_SIZE = 32


def build_attention(hidden_size: int = HIDDEN_SIZE, seed: int = 0, **fields) -> Attention:
    """Build an Attention from config fields, with weights large enough to give sharp attention."""
    config = AttentionConfig.from_dict(fields).resolved
    with torch.device("meta"):
        module = Attention(config, hidden_size=hidden_size)
    materialize(module, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3 + (1.0 if parameter.dim() == 1 else 0.0))
    return module.eval()


def reference_attention(module: Attention, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Compute the attention output step by step in float64, from the module's weights only."""
    config = module.config
    batch, seq, _ = x.shape
    heads, kv_heads, head_size = module.heads, module.kv_heads, module.head_size
    x = x.double()

    def project(linear, inputs):
        outputs = inputs @ linear.weight.double().T
        return outputs if linear.bias is None else outputs + linear.bias.double()

    def rms_norm(norm, inputs):
        epsilon = norm.config.epsilon
        return inputs / torch.sqrt(inputs.pow(2).mean(-1, keepdim=True) + epsilon) * norm.weight.double()

    query, key, value = project(module.query, x), project(module.key, x), project(module.value, x)
    if config.query_norm is not None and not config.qk_norm_per_head:
        query, key = rms_norm(module.query_norm, query), rms_norm(module.key_norm, key)
    query = query.view(batch, seq, heads, head_size).transpose(1, 2)
    key = key.view(batch, seq, kv_heads, head_size).transpose(1, 2)
    value = value.view(batch, seq, kv_heads, head_size).transpose(1, 2)
    if config.query_norm is not None and config.qk_norm_per_head:
        query, key = rms_norm(module.query_norm, query), rms_norm(module.key_norm, key)

    if config.rotary.type_name == "default":
        width = int(head_size * config.rotary.fraction)
        inverse_frequency = config.rotary.theta ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)
        angles = positions.double()[:, None] * inverse_frequency[None, :]
        cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)

        def rotate(tensor):
            part, rest = tensor[..., :width], tensor[..., width:]
            first, second = part[..., : width // 2], part[..., width // 2 :]
            return torch.cat((part * cos + torch.cat((-second, first), -1) * sin, rest), -1)

        query, key = rotate(query), rotate(key)

    key = key.repeat_interleave(heads // kv_heads, dim=1)
    value = value.repeat_interleave(heads // kv_heads, dim=1)
    scale = config.softmax_scale if config.softmax_scale is not None else 1 / math.sqrt(head_size)
    scores = query @ key.transpose(-1, -2) * scale  # (batch, heads, seq, seq)
    if config.soft_cap is not None:
        scores = config.soft_cap * torch.tanh(scores / config.soft_cap)
    visible = torch.ones(seq, seq, dtype=torch.bool)
    for i in range(seq):
        for j in range(seq):
            if config.causal and j > i:
                visible[i, j] = False
            if config.window_size is not None and j <= i - config.window_size:
                visible[i, j] = False
    scores = scores.masked_fill(~visible, float("-inf"))
    attended = torch.softmax(scores, dim=-1) @ value  # (batch, heads, seq, head_size)

    attended = attended.transpose(1, 2).reshape(batch, seq, heads * head_size)
    return project(module.output, attended).float()


CASES = {
    "mha": {"heads": 4},
    "gqa": {"heads": 4, "head_groups": 2, "rotary": {"type": "default", "theta": 100.0}},
    "mqa": {"heads": 4, "head_groups": 1, "rotary": {"type": "default", "theta": 100.0}},
    "window": {"heads": 4, "head_groups": 2, "window_size": 3, "rotary": {"type": "default", "theta": 100.0}},
    "soft_cap": {"heads": 4, "head_groups": 2, "soft_cap": 2.0, "rotary": {"type": "default", "theta": 100.0}},
    "soft_cap_window": {"heads": 4, "soft_cap": 2.0, "window_size": 2},
    "partial_rotary": {"heads": 4, "head_size": 12, "rotary": {"type": "default", "theta": 100.0, "fraction": 0.5}},
    "qk_norm_per_head": {"heads": 4, "head_groups": 2, "query_norm": {}, "key_norm": {}, "rotary": {"type": "default"}},
    "qk_norm_whole": {"heads": 4, "head_groups": 2, "query_norm": {}, "key_norm": {}, "qk_norm_per_head": False},
    "biases_scale_head_size": {"heads": 2, "head_size": 24, "add_linear_biases": True, "softmax_scale": 0.5},
    "non_causal": {"heads": 4, "causal": False, "rotary": {"type": "default", "theta": 100.0}},
}


@pytest.mark.parametrize("name", CASES)
def test_attention_matches_reference(name):
    module = build_attention(**CASES[name])
    x = torch.randn(2, 7, HIDDEN_SIZE, generator=torch.Generator().manual_seed(1))
    positions = torch.arange(7)

    actual = module(x, positions=positions)

    assert actual.shape == (2, 7, HIDDEN_SIZE)
    torch.testing.assert_close(actual, reference_attention(module, x, positions), rtol=1e-4, atol=1e-5)


def test_attention_matches_reference_at_offset_positions():
    module = build_attention(heads=4, head_groups=2, window_size=3, rotary={"type": "default", "theta": 100.0})
    x = torch.randn(1, 5, HIDDEN_SIZE, generator=torch.Generator().manual_seed(2))
    positions = torch.arange(40, 45)

    actual = module(x, positions=positions)

    torch.testing.assert_close(actual, reference_attention(module, x, positions), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mha", "gqa", "window", "soft_cap_window", "qk_norm_per_head"])
def test_attention_cached_chunks_match_full(name):
    module = build_attention(**CASES[name])
    x = torch.randn(2, 9, HIDDEN_SIZE, generator=torch.Generator().manual_seed(3))
    expected = module(x, positions=torch.arange(9))
    cache = KVCache()

    chunks = []
    for start, stop in [(0, 4), (4, 5), (5, 8), (8, 9)]:
        chunks.append(module(x[:, start:stop], positions=torch.arange(start, stop), cache=cache))

    torch.testing.assert_close(torch.cat(chunks, dim=1), expected, rtol=1e-5, atol=1e-6)
    assert cache.length == 9


def test_attention_window_cache_keeps_window():
    module = build_attention(heads=4, window_size=3)
    cache = KVCache()
    x = torch.randn(1, 6, HIDDEN_SIZE)

    module(x[:, :5], positions=torch.arange(5), cache=cache)
    module(x[:, 5:], positions=torch.tensor([5]), cache=cache)

    layer_cache = cache.layer(0, window_size=3)
    assert layer_cache.stored == 3
    assert layer_cache.keys.shape == (1, 4, 3, 8)
    assert layer_cache.positions.tolist() == [3, 4, 5]


def test_attention_dropout_only_in_training():
    module = build_attention(heads=4, dropout=0.5)
    x = torch.randn(1, 6, HIDDEN_SIZE, generator=torch.Generator().manual_seed(4))
    positions = torch.arange(6)

    evaluated = module(x, positions=positions)
    torch.testing.assert_close(evaluated, reference_attention(module, x, positions), rtol=1e-4, atol=1e-5)

    module.train()
    torch.manual_seed(0)
    trained = module(x, positions=positions)
    assert not torch.allclose(trained, evaluated, atol=1e-3)


def test_attention_projection_shapes():
    module = build_attention(heads=16, head_groups=8, head_size=128, hidden_size=64)

    assert module.query.weight.shape == (16 * 128, 64)
    assert module.key.weight.shape == (8 * 128, 64)
    assert module.value.weight.shape == (8 * 128, 64)
    assert module.output.weight.shape == (64, 16 * 128)


def test_attention_norm_widths():
    per_head = build_attention(heads=4, head_groups=2, query_norm={}, key_norm={})
    whole = build_attention(heads=4, head_groups=2, query_norm={}, key_norm={}, qk_norm_per_head=False)

    assert per_head.query_norm.weight.shape == (8,)
    assert per_head.key_norm.weight.shape == (8,)
    assert whole.query_norm.weight.shape == (32,)
    assert whole.key_norm.weight.shape == (16,)


def test_attention_parameter_specs():
    config = AttentionConfig.from_dict({"heads": 4, "lr_scale": 0.5, "key": {"lr_scale": 0.1}}).resolved
    with torch.device("meta"):
        module = Attention(config, hidden_size=HIDDEN_SIZE, num_layers=6, lr_scale=2.0)

    assert parameter_spec(module.query.weight).lr_scale == pytest.approx(1.0)
    assert parameter_spec(module.key.weight).lr_scale == pytest.approx(0.1)
    assert parameter_spec(module.output.weight).num_layers == 6
    assert parameter_spec(module.output.weight).initialization.type_name == "depth_scaled_normal"
    assert parameter_spec(module.query.weight).initialization.type_name == "normal"


def test_attention_lora_on_query_and_value():
    config = AttentionConfig.from_dict({"heads": 4}).resolved
    with torch.device("meta"):
        module = Attention(config, hidden_size=HIDDEN_SIZE, peft=LoraConfig(rank=2))

    assert module.query.lora_a is not None
    assert module.value.lora_a is not None
    assert module.key.lora_a is None
    assert module.output.lora_a is None


def test_attention_rejects_hidden_size_not_divisible():
    config = AttentionConfig.from_dict({"heads": 3}).resolved

    with pytest.raises(ConfigError, match=r"head_size: attention of layer 2 .*hidden_size=32 is not divisible by heads=3") as info:
        Attention(config, hidden_size=HIDDEN_SIZE, layer_index=2)
    assert info.value.issues[0].path == "head_size"
    assert "set head_size explicitly" in info.value.issues[0].message


def test_attention_rejects_odd_rotated_width_at_build():
    config = AttentionConfig.from_dict({"heads": 4, "rotary": {"type": "default", "fraction": 0.75}}).resolved

    with pytest.raises(ConfigError, match=r"rotary\.fraction: attention of layer 0 .*int\(10 \* 0\.75\) = 7 must be even") as info:
        Attention(config, hidden_size=40)
    assert info.value.issues[0].path == "rotary.fraction"
    assert info.value.issues[0].value == 0.75


def test_attention_mask_window_convention():
    # Mistral/Qwen2 `sliding_window` in transformers: query i sees keys j with i - window < j <= i.
    mask = attention_mask(torch.arange(5), torch.arange(5), causal=True, window_size=2)

    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    assert attention_mask(torch.arange(3), torch.arange(3), causal=False, window_size=None) is None


def test_attention_bfloat16_close_to_float32():
    module = build_attention(heads=4, head_groups=2, window_size=3, rotary={"type": "default", "theta": 100.0})
    x = torch.randn(2, 7, HIDDEN_SIZE, generator=torch.Generator().manual_seed(5))
    expected = module(x, positions=torch.arange(7))

    actual = module.to(torch.bfloat16)(x.to(torch.bfloat16), positions=torch.arange(7))

    assert actual.dtype == torch.bfloat16
    assert module.rotary.inverse_frequency.dtype == torch.float32
    torch.testing.assert_close(actual.float(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", ["gqa", "mqa", "window"])
def test_attention_repeats_heads_without_enable_gqa(name, monkeypatch):
    monkeypatch.setattr("blockspec.layers.attention.module._SDPA_HAS_GQA", False)
    module = build_attention(**CASES[name])
    x = torch.randn(2, 7, HIDDEN_SIZE, generator=torch.Generator().manual_seed(6))
    positions = torch.arange(7)

    actual = module(x, positions=positions)

    torch.testing.assert_close(actual, reference_attention(module, x, positions), rtol=1e-4, atol=1e-5)
