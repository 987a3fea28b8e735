"""Tests of AttentionConfig and the rotary configs: defaults, shortcuts, round trip, rejections."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from blockspec import (
    AttentionConfig,
    ConfigError,
    DepthScaledNormalInitializationConfig,
    Llama3RotaryConfig,
    NormalInitializationConfig,
    NoRotaryConfig,
    RMSNormConfig,
    YarnRotaryConfig,
    ZerosInitializationConfig,
)


def config_error(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        AttentionConfig.from_dict(data)
    return info.value


def test_attention_parent_defaults():
    config = AttentionConfig.from_dict({"heads": 8})
    resolved = config.resolved
    for name in ("query", "key", "value"):
        linear = getattr(resolved, name)
        assert linear.bias is False
        assert linear.weight_initialization == NormalInitializationConfig(std=0.02)
        assert linear.bias_initialization == ZerosInitializationConfig()
        assert linear.weight_decay is True
    assert resolved.output.weight_initialization == DepthScaledNormalInitializationConfig(std=0.02)
    assert resolved.query.apply_peft is True
    assert resolved.value.apply_peft is True
    assert resolved.key.apply_peft is False
    assert resolved.output.apply_peft is False
    assert resolved.rotary == NoRotaryConfig()
    # The defaults stay out of the saved config.
    assert config.to_dict() == {"type": "attention", "heads": 8}
    assert config.query.bias is None


def test_attention_kv_heads():
    assert AttentionConfig.from_dict({"heads": 8}).kv_heads == 8
    assert AttentionConfig.from_dict({"heads": 8, "head_groups": 2}).kv_heads == 2


def test_attention_head_size_for():
    assert AttentionConfig.from_dict({"heads": 8}).head_size_for(64) == 8
    assert AttentionConfig.from_dict({"heads": 16, "head_size": 128}).head_size_for(1024) == 128
    with pytest.raises(ValueError, match=r"hidden_size=100 is not divisible by heads=8"):
        AttentionConfig.from_dict({"heads": 8}).head_size_for(100)


def test_attention_check_hidden_size():
    assert AttentionConfig.from_dict({"heads": 4, "rotary": {"type": "default", "fraction": 0.5}}).check_hidden_size(64) == 16

    with pytest.raises(ValidationError) as info:
        AttentionConfig.from_dict({"heads": 3}).check_hidden_size(64)
    assert info.value.errors()[0]["loc"] == ("head_size",)
    assert "hidden_size=64 is not divisible by heads=3" in info.value.errors()[0]["msg"]

    with pytest.raises(ValidationError) as info:
        AttentionConfig.from_dict({"heads": 4, "rotary": {"type": "default", "fraction": 0.75}}).check_hidden_size(40)
    assert info.value.errors()[0]["loc"] == ("rotary", "fraction")
    assert "e.g. 0.6 (rotates 6 dimensions)" in info.value.errors()[0]["msg"]


def test_attention_shortcuts_expand():
    config = AttentionConfig.from_dict({"heads": 4, "add_linear_biases": True, "init_std": 0.01, "key": {"bias": False}})
    assert config.query.bias is True
    assert config.key.bias is False  # set by the user, so the shortcut leaves it
    assert config.value.bias is True
    assert config.output.bias is True
    assert config.query.weight_initialization == NormalInitializationConfig(std=0.01)
    assert config.output.weight_initialization == DepthScaledNormalInitializationConfig(std=0.01)
    assert config.add_linear_biases is None
    assert "add_linear_biases" not in config.to_dict()
    assert "init_std" not in config.to_dict()


def test_attention_round_trip():
    data = {
        "heads": 16,
        "head_groups": 8,
        "head_size": 128,
        "window_size": 4096,
        "query_norm": {"type": "rms_norm", "epsilon": 1e-6},
        "key_norm": {"type": "rms_norm", "epsilon": 1e-6},
        "soft_cap": 50.0,
        "rotary": {"type": "yarn", "factor": 4.0, "original_context_length": 32768, "fraction": 0.5},
        "add_linear_biases": True,
    }
    config = AttentionConfig.from_dict(data)
    assert AttentionConfig.from_yaml(config.to_yaml()) == config
    assert AttentionConfig.from_yaml(config.to_yaml(resolved=True)).resolved == config.resolved
    assert config.query_norm == RMSNormConfig(epsilon=1e-6)
    assert config.rotary == YarnRotaryConfig(factor=4.0, original_context_length=32768, fraction=0.5)


def test_rotary_llama3_defaults():
    rotary = AttentionConfig.from_dict({"heads": 4, "rotary": {"type": "llama3"}}).rotary
    assert rotary == Llama3RotaryConfig()
    assert rotary.theta == 500000.0
    assert rotary.factor == 8.0
    assert rotary.original_context_length == 8192


def test_attention_rejects_head_groups_not_dividing_heads():
    error = config_error({"heads": 8, "head_groups": 3})
    assert error.issues[0].path == "head_groups"
    assert error.issues[0].value == 3
    assert "head_groups must divide heads=8, got 3; use one of [1, 2, 4, 8]" in error.issues[0].message


def test_attention_rejects_odd_rotated_width():
    error = config_error({"heads": 4, "head_size": 10, "rotary": {"type": "default", "fraction": 0.3}})
    assert error.issues[0].path == "rotary.fraction"
    assert error.issues[0].value == 0.3
    assert "int(10 * 0.3) = 3 must be even" in error.issues[0].message
    assert "e.g. 0.2 (rotates 2 dimensions)" in error.issues[0].message


def test_attention_rejects_unknown_rotary_type():
    error = config_error({"heads": 4, "rotary": {"type": "llama"}})
    assert error.issues[0].path == "rotary.type"
    assert "Did you mean 'llama3'?" in error.issues[0].message


def test_attention_rejects_window_without_causal():
    error = config_error({"heads": 4, "causal": False, "window_size": 8})
    assert error.issues[0].path == "window_size"
    assert "requires causal attention" in error.issues[0].message


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"heads": 0}, "heads", "greater than 0"),
        ({"heads": 4, "head_size": 0}, "head_size", "greater than 0"),
        ({"heads": 4, "dropout": 1.0}, "dropout", "less than 1"),
        ({"heads": 4, "soft_cap": -1.0}, "soft_cap", "greater than 0"),
        ({"heads": 4, "rotary": {"type": "default", "fraction": 1.5}}, "rotary.fraction", "less than or equal to 1"),
        ({"heads": 4, "rotary": {"type": "linear"}}, "rotary.factor", "required"),
        ({"heads": 4, "rotary": {"type": "yarn", "factor": 4.0}}, "rotary.original_context_length", "required"),
        ({"heads": 4, "rotary": {"type": "none", "theta": 10.0}}, "rotary.theta", "unknown key 'theta'"),
        ({"heads": 4, "haeds": 4}, "haeds", "Did you mean 'heads'?"),
    ],
)
def test_attention_rejects_invalid_field(data, path, message):
    error = config_error(data)
    assert error.issues[0].path == path
    assert message in error.issues[0].message


def test_rotary_llama3_rejects_frequency_factors():
    error = config_error({"heads": 4, "rotary": {"type": "llama3", "low_frequency_factor": 4.0, "high_frequency_factor": 2.0}})
    assert error.issues[0].path == "rotary.high_frequency_factor"
    assert "must be greater than low_frequency_factor=4.0, got 2.0" in error.issues[0].message
