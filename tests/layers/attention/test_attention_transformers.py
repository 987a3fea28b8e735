"""Tests of the Attention module against the attention layers of Hugging Face transformers (eager)."""

from __future__ import annotations

import pytest
import torch
from transformers import Gemma2Config, Olmo2Config, Qwen2Config, Qwen3Config
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.gemma2.modeling_gemma2 import Gemma2Attention, Gemma2RotaryEmbedding
from transformers.models.olmo2.modeling_olmo2 import Olmo2Attention, Olmo2RotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3RotaryEmbedding

from blockspec import AttentionConfig
from blockspec.build import materialize
from blockspec.layers.attention.module import Attention

HIDDEN_SIZE = 32
SEQ = 9


def build_attention(fields: dict) -> Attention:
    config = AttentionConfig.from_dict(fields).resolved
    with torch.device("meta"):
        module = Attention(config, hidden_size=HIDDEN_SIZE)
    materialize(module, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3 + (1.0 if parameter.dim() == 1 else 0.0))
    return module.eval()


def copy_weights(module: Attention, hf_attention: torch.nn.Module) -> None:
    pairs = [
        (module.query, hf_attention.q_proj),
        (module.key, hf_attention.k_proj),
        (module.value, hf_attention.v_proj),
        (module.output, hf_attention.o_proj),
    ]
    with torch.no_grad():
        for ours, theirs in pairs:
            theirs.weight.copy_(ours.weight)
            assert (ours.bias is None) == (theirs.bias is None)
            if theirs.bias is not None:
                theirs.bias.copy_(ours.bias)
        if module.query_norm is not None:
            hf_attention.q_norm.weight.copy_(module.query_norm.weight)
            hf_attention.k_norm.weight.copy_(module.key_norm.weight)


def gemma2():
    hf_config = Gemma2Config(
        hidden_size=HIDDEN_SIZE,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=3,
        query_pre_attn_scalar=16,
        attn_logit_softcapping=2.0,
        num_hidden_layers=1,
        layer_types=["sliding_attention"],
        vocab_size=16,
    )
    fields = {
        "heads": 4,
        "head_groups": 2,
        "head_size": 8,
        "window_size": 3,
        "soft_cap": 2.0,
        "softmax_scale": 16**-0.5,
        "rotary": {"type": "default", "theta": 10000.0},
    }
    return hf_config, fields, Gemma2Attention, Gemma2RotaryEmbedding, create_sliding_window_causal_mask


def qwen3():
    hf_config = Qwen3Config(
        hidden_size=HIDDEN_SIZE,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        num_hidden_layers=1,
        vocab_size=16,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    fields = {
        "heads": 4,
        "head_groups": 2,
        "head_size": 16,
        "query_norm": {"type": "rms_norm", "epsilon": 1e-6},
        "key_norm": {"type": "rms_norm", "epsilon": 1e-6},
        "rotary": {"type": "default", "theta": 1000000.0},
    }
    return hf_config, fields, Qwen3Attention, Qwen3RotaryEmbedding, create_causal_mask


def olmo2():
    hf_config = Olmo2Config(
        hidden_size=HIDDEN_SIZE,
        num_attention_heads=4,
        num_key_value_heads=4,
        rms_norm_eps=1e-6,
        num_hidden_layers=1,
        vocab_size=16,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    fields = {
        "heads": 4,
        "query_norm": {"type": "rms_norm", "epsilon": 1e-6},
        "key_norm": {"type": "rms_norm", "epsilon": 1e-6},
        "qk_norm_per_head": False,
        "rotary": {"type": "default", "theta": 500000.0},
    }
    return hf_config, fields, Olmo2Attention, Olmo2RotaryEmbedding, create_causal_mask


def qwen2_sliding():
    hf_config = Qwen2Config(
        hidden_size=HIDDEN_SIZE,
        num_attention_heads=4,
        num_key_value_heads=1,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=0,
        num_hidden_layers=1,
        layer_types=["sliding_attention"],
        vocab_size=16,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    fields = {
        "heads": 4,
        "head_groups": 1,
        "window_size": 4,
        "query": {"bias": True},
        "key": {"bias": True},
        "value": {"bias": True},
        "rotary": {"type": "default", "theta": 10000.0},
    }
    return hf_config, fields, Qwen2Attention, Qwen2RotaryEmbedding, create_sliding_window_causal_mask


@pytest.mark.parametrize("case", [gemma2, qwen3, olmo2, qwen2_sliding], ids=lambda case: case.__name__)
def test_attention_matches_transformers(case):
    hf_config, fields, attention_class, rotary_class, mask_function = case()
    hf_config._attn_implementation = "eager"
    module = build_attention(fields)
    hf_attention = attention_class(hf_config, layer_idx=0).eval()
    copy_weights(module, hf_attention)
    x = torch.randn(2, SEQ, HIDDEN_SIZE, generator=torch.Generator().manual_seed(1))
    position_ids = torch.arange(SEQ)[None].expand(2, -1)
    mask = mask_function(config=hf_config, inputs_embeds=x, attention_mask=None, cache=None, position_ids=position_ids)
    cos, sin = rotary_class(hf_config)(x, position_ids)

    expected, _ = hf_attention(x, position_embeddings=(cos, sin), attention_mask=mask)
    actual = module(x, positions=torch.arange(SEQ))

    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
