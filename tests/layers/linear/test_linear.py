"""Tests of the Linear module: parameters and specs, forward, LoRA adapters, merging."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blockspec import (
    FillInitializationConfig,
    LinearConfig,
    LoraConfig,
    NoPeftConfig,
    NormalInitializationConfig,
    ZerosInitializationConfig,
)
from blockspec.build import materialize, parameter_spec
from blockspec.layers.linear.module import Linear, lora_state_dict, merge_lora


def _linear(config: LinearConfig, in_features: int = 6, out_features: int = 4, seed: int = 0, **build_args) -> Linear:
    with torch.device("meta"):
        layer = Linear(config, in_features, out_features, **build_args)
    return materialize(layer, seed=seed)


def test_linear_defaults():
    layer = _linear(LinearConfig())
    spec = parameter_spec(layer.weight)
    assert layer.weight.shape == (4, 6)
    assert layer.bias is None
    assert layer.lora_a is None
    assert spec.initialization == NormalInitializationConfig()
    assert spec.weight_decay is True
    assert spec.lr_scale == 1.0
    assert spec.fan_in == 6


def test_linear_bias_settings():
    config = LinearConfig(bias=True, bias_initialization=FillInitializationConfig(value=0.5), lr_scale=0.5)
    layer = _linear(config, lr_scale=0.1, num_layers=3)
    spec = parameter_spec(layer.bias)
    assert torch.equal(layer.bias, torch.full((4,), 0.5))
    assert spec.weight_decay is False
    assert spec.lr_scale == pytest.approx(0.05)
    assert spec.num_layers == 3
    assert parameter_spec(layer.weight).lr_scale == pytest.approx(0.05)


def test_linear_default_bias_zeros():
    layer = _linear(LinearConfig(bias=True, weight_decay=False))
    assert torch.equal(layer.bias, torch.zeros(4))
    assert parameter_spec(layer.weight).weight_decay is False


def test_linear_zero_lr_scale_frozen():
    layer = _linear(LinearConfig(lr_scale=0.0))
    assert layer.weight.requires_grad is False


def test_linear_forward_matches_torch():
    layer = _linear(LinearConfig(bias=True, bias_initialization=NormalInitializationConfig(std=1.0)))
    reference = nn.Linear(6, 4)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 6)
    assert torch.equal(layer(x), reference(x))


def test_linear_unknown_build_argument_rejected():
    with pytest.raises(TypeError, match="hidden_size"):
        Linear(LinearConfig(), 6, 4, hidden_size=6)


def test_linear_lora_needs_apply_peft():
    for config, peft in [
        (LinearConfig(), LoraConfig()),
        (LinearConfig(apply_peft=False), LoraConfig()),
        (LinearConfig(apply_peft=True), NoPeftConfig()),
        (LinearConfig(apply_peft=True), None),
    ]:
        layer = _linear(config, peft=peft)
        assert layer.lora_a is None, (config, peft)
        assert layer.weight.requires_grad is True, (config, peft)


@pytest.mark.parametrize(
    ("config", "peft"),
    [
        (LinearConfig(), None),
        (LinearConfig(bias=True, apply_peft=True), None),
        (LinearConfig(bias=True, apply_peft=True), NoPeftConfig()),
        (LinearConfig(apply_peft=False), LoraConfig(rank=3)),
        (LinearConfig(apply_peft=True), LoraConfig(rank=3)),
        (LinearConfig(bias=True, apply_peft=True), LoraConfig(rank=2)),
    ],
)
def test_linear_config_counts_parameters(config, peft):
    with torch.device("meta"):
        layer = Linear(config, 6, 4, peft=peft)

    count = config.num_parameters(in_features=6, out_features=4, peft=peft)

    assert count == sum(parameter.numel() for parameter in layer.parameters())


def test_linear_config_counts_lora_adapters():
    config = LinearConfig(apply_peft=True)

    with_lora = config.num_parameters(in_features=6, out_features=4, peft=LoraConfig(rank=3))

    assert with_lora == 6 * 4 + 3 * (6 + 4)


def test_linear_lora_parameters():
    layer = _linear(LinearConfig(bias=True, apply_peft=True), peft=LoraConfig(rank=2, alpha=8.0), lr_scale=0.5)
    assert layer.lora_a.shape == (2, 6)
    assert layer.lora_b.shape == (4, 2)
    assert torch.equal(layer.lora_b, torch.zeros(4, 2))
    assert layer.lora_a.abs().max().item() > 0
    assert layer.lora_scaling == 4.0
    assert layer.weight.requires_grad is False
    assert layer.bias.requires_grad is False
    assert layer.lora_a.requires_grad is True
    assert parameter_spec(layer.lora_a).is_lora is True
    assert parameter_spec(layer.lora_b).lr_scale == 0.5
    assert parameter_spec(layer.weight).is_lora is False


def test_linear_lora_starts_equal_to_base():
    config = LinearConfig(apply_peft=True)
    adapted = _linear(config, peft=LoraConfig())
    base = _linear(config)
    x = torch.randn(5, 6)
    assert torch.equal(adapted(x), base(x))


def test_linear_lora_forward_formula():
    layer = _linear(LinearConfig(bias=True, apply_peft=True), peft=LoraConfig(rank=3, alpha=6.0))
    with torch.no_grad():
        layer.lora_b.normal_()
        layer.bias.normal_()
    x = torch.randn(2, 5, 6)
    expected = x @ layer.weight.T + layer.bias + 2.0 * (x @ layer.lora_a.T @ layer.lora_b.T)
    torch.testing.assert_close(layer(x), expected)


def test_linear_lora_dropout_only_in_training():
    layer = _linear(LinearConfig(apply_peft=True), peft=LoraConfig(dropout=0.5))
    with torch.no_grad():
        layer.lora_b.normal_()
    x = torch.randn(64, 6)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    torch.manual_seed(0)
    first = layer(x)
    torch.manual_seed(1)
    second = layer(x)
    assert not torch.equal(first, second)


def test_linear_lora_gradients_reach_adapters_only():
    layer = _linear(LinearConfig(bias=True, apply_peft=True), peft=LoraConfig())
    with torch.no_grad():
        layer.lora_b.normal_()
    layer(torch.randn(3, 6)).sum().backward()
    assert layer.weight.grad is None
    assert layer.bias.grad is None
    assert layer.lora_a.grad is not None
    assert layer.lora_b.grad is not None


def test_merge_lora_keeps_output():
    model = nn.Sequential(
        _linear(LinearConfig(bias=True, apply_peft=True), 6, 6, peft=LoraConfig(rank=2)),
        _linear(LinearConfig(), 6, 4, seed=1),
    )
    with torch.no_grad():
        model[0].lora_b.normal_()
    x = torch.randn(3, 6)
    before = model(x)
    assert merge_lora(model) is model
    torch.testing.assert_close(model(x), before)
    assert model[0].lora_a is None
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight"]


def test_lora_state_dict_round_trip():
    config = LinearConfig(apply_peft=True)
    trained = nn.Sequential(_linear(config, peft=LoraConfig()))
    with torch.no_grad():
        trained[0].lora_b.normal_()
    adapters = lora_state_dict(trained)
    assert sorted(adapters) == ["0.lora_a", "0.lora_b"]

    fresh = nn.Sequential(_linear(config, peft=LoraConfig()))
    result = fresh.load_state_dict(adapters, strict=False)
    assert result.missing_keys == ["0.weight"]
    assert result.unexpected_keys == []
    x = torch.randn(2, 6)
    torch.testing.assert_close(fresh(x), trained(x))


def test_linear_zeros_weight_initialization():
    layer = _linear(LinearConfig(weight_initialization=ZerosInitializationConfig()))
    assert torch.equal(layer.weight, torch.zeros(4, 6))
