"""Tests of the normalization configs' defaults and modules, against reference implementations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from blockspec import (
    FillInitializationConfig,
    NoNormalizationConfig,
    NormalizationConfig,
    OnesInitializationConfig,
    RMSNormConfig,
    ZerosInitializationConfig,
)
from blockspec.build import materialize, parameter_spec
from blockspec.layers.normalization.module import LayerNorm, NoNormalization, RMSNorm

HIDDEN = 8


def _build(module_class, data: dict, seed: int = 0, **build_args):
    config = NormalizationConfig.from_dict(data).resolved
    with torch.device("meta"):
        module = module_class(config, hidden_size=HIDDEN, **build_args)
    return materialize(module, seed=seed)


def _randomize(parameter: torch.Tensor) -> None:
    with torch.no_grad():
        parameter.normal_(0.0, 0.5)


def test_rms_norm_config_defaults_resolved():
    config = NormalizationConfig.from_dict({})
    assert isinstance(config, RMSNormConfig)
    assert config.weight.initialization is None
    assert config.resolved.weight.initialization == OnesInitializationConfig()
    assert config.resolved.weight.weight_decay is False
    assert config.to_dict() == {"type": "rms_norm"}


def test_rms_norm_config_zero_centered_default():
    config = NormalizationConfig.from_dict({"zero_centered": True})
    assert config.resolved.weight.initialization == ZerosInitializationConfig()


def test_rms_norm_config_user_values_kept():
    data = {"weight": {"initialization": {"type": "fill", "value": 2.0}, "weight_decay": True}}
    config = NormalizationConfig.from_dict(data)
    assert config.resolved.weight.initialization == FillInitializationConfig(value=2.0)
    assert config.resolved.weight.weight_decay is True
    assert config.to_dict() == {"type": "rms_norm", **data}


def test_layer_norm_config_resolved_round_trip():
    config = NormalizationConfig.from_dict({"type": "layer_norm"})
    assert config.resolved.bias_parameter.initialization == ZerosInitializationConfig()
    assert config.resolved.bias_parameter.weight_decay is False
    reloaded = NormalizationConfig.from_dict(config.to_dict(resolved=True))
    assert reloaded.resolved == config.resolved


def test_rms_norm_parameters():
    norm = _build(RMSNorm, {"lr_scale": 0.5}, lr_scale=0.1)
    spec = parameter_spec(norm.weight)
    assert torch.equal(norm.weight, torch.ones(HIDDEN))
    assert spec.weight_decay is False
    assert spec.lr_scale == pytest.approx(0.05)


def test_rms_norm_weight_lr_scale_multiplies():
    norm = _build(RMSNorm, {"lr_scale": 0.5, "weight": {"lr_scale": 0.5}}, lr_scale=2.0)
    assert parameter_spec(norm.weight).lr_scale == pytest.approx(0.5)


def test_rms_norm_matches_llama():
    norm = _build(RMSNorm, {"epsilon": 1e-6})
    _randomize(norm.weight)
    reference = LlamaRMSNorm(HIDDEN, eps=1e-6)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 5, HIDDEN)
    torch.testing.assert_close(norm(x), reference(x), rtol=0, atol=0)


def test_rms_norm_zero_centered_matches_gemma():
    norm = _build(RMSNorm, {"epsilon": 1e-6, "zero_centered": True})
    assert torch.equal(norm.weight, torch.zeros(HIDDEN))
    _randomize(norm.weight)
    reference = GemmaRMSNorm(HIDDEN, eps=1e-6)
    reference.load_state_dict(norm.state_dict())
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 5, HIDDEN).to(dtype)
        assert torch.equal(norm(x), reference(x)), dtype


def test_rms_norm_keeps_input_dtype():
    norm = _build(RMSNorm, {})
    x = torch.randn(3, HIDDEN, dtype=torch.bfloat16)
    assert norm(x).dtype == torch.bfloat16


def test_layer_norm_matches_torch():
    norm = _build(LayerNorm, {"type": "layer_norm", "epsilon": 1e-6})
    assert torch.equal(norm.bias, torch.zeros(HIDDEN))
    _randomize(norm.weight)
    _randomize(norm.bias)
    reference = nn.LayerNorm(HIDDEN, eps=1e-6)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 5, HIDDEN)
    torch.testing.assert_close(norm(x), reference(x))


def test_layer_norm_zero_centered_without_bias():
    norm = _build(LayerNorm, {"type": "layer_norm", "zero_centered": True, "bias": False})
    assert norm.bias is None
    assert [name for name, _ in norm.named_parameters()] == ["weight"]
    _randomize(norm.weight)
    reference = nn.LayerNorm(HIDDEN, bias=False)
    with torch.no_grad():
        reference.weight.copy_(norm.weight + 1)
    x = torch.randn(4, HIDDEN)
    torch.testing.assert_close(norm(x), reference(x))


def test_layer_norm_bias_parameter_settings():
    norm = _build(LayerNorm, {"type": "layer_norm", "bias_parameter": {"lr_scale": 0.0}})
    assert norm.bias.requires_grad is False
    assert parameter_spec(norm.bias).weight_decay is False


def test_no_normalization_identity():
    norm = _build(NoNormalization, {"type": "none"})
    assert isinstance(norm.config, NoNormalizationConfig)
    assert list(norm.parameters()) == []
    x = torch.randn(2, HIDDEN)
    assert norm(x) is x
