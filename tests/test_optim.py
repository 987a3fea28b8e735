"""Tests of param_groups: grouping by lr scale and weight decay, exclusions, use with AdamW."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toy_weights_model import TinyModelConfig

from blockspec import ModelConfig
from blockspec.optim import param_groups

def _model(**data) -> nn.Module:
    config: TinyModelConfig = ModelConfig.from_dict({"type": "test_tiny_model", **data})
    return config.build()


def _summary(groups: list[dict]) -> list[tuple[float, float, float, int]]:
    return [(group["lr"], group["weight_decay"], group["lr_scale"], len(group["params"])) for group in groups]


def test_param_groups_by_scale_and_decay():
    model = _model(projection={"lr_scale": 0.5, "bias": True}, output={"weight_decay": False})
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)
    assert _summary(groups) == [
        (5e-4, 0.1, 0.5, 1),  # projection.weight
        (5e-4, 0.0, 0.5, 1),  # projection.bias
        (1e-3, 0.0, 1.0, 3),  # normalization.weight, output.weight, plain.bias
        (1e-3, 0.1, 1.0, 1),  # plain.weight (no spec, 2 dimensions)
    ]
    assert groups[0]["params"][0] is model.projection.weight
    assert groups[1]["params"][0] is model.projection.bias
    assert groups[2]["params"] == [model.normalization.weight, model.output.weight, model.plain.bias]


def test_param_groups_scale_multiplies_down_tree():
    model = _model(lr_scale=0.5, projection={"lr_scale": 0.5})
    groups = param_groups(model, lr=1.0)
    assert groups[0]["params"][0] is model.projection.weight
    assert groups[0]["lr"] == pytest.approx(0.25)


def test_param_groups_skip_frozen():
    model = _model(output={"lr_scale": 0.0})
    model.plain.bias.requires_grad_(False)
    listed = [parameter for group in param_groups(model, lr=1.0) for parameter in group["params"]]
    assert len(listed) == 3
    assert all(parameter is not model.output.weight for parameter in listed)
    assert all(parameter is not model.plain.bias for parameter in listed)


def test_param_groups_tied_listed_once():
    model = _model(tied=True)
    listed = [parameter for group in param_groups(model, lr=1.0) for parameter in group["params"]]
    assert len(listed) == len({id(parameter) for parameter in listed}) == 4


def test_param_groups_lora_adapters_only():
    model = _model(peft={"type": "lora"}, projection={"apply_peft": True}, output={"apply_peft": True})
    groups = param_groups(model, lr=1.0, weight_decay=0.01)
    assert _summary(groups) == [(1.0, 0.01, 1.0, 4)]
    assert groups[0]["params"] == [model.projection.lora_a, model.projection.lora_b, model.output.lora_a, model.output.lora_b]


def test_param_groups_adamw_decay():
    model = _model(output={"weight_decay": False})
    optimizer = torch.optim.AdamW(param_groups(model, lr=0.1, weight_decay=0.5))
    decayed = model.plain.weight.detach().clone()
    kept = model.output.weight.detach().clone()
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)

    # With zero gradients the Adam update is 0, so only decoupled weight decay moves values.
    optimizer.step()
    torch.testing.assert_close(model.plain.weight.detach(), decayed * (1 - 0.1 * 0.5))
    assert torch.equal(model.output.weight, kept)


def test_param_groups_adamw_skips_frozen():
    model = _model(projection={"lr_scale": 0.0})
    optimizer = torch.optim.AdamW(param_groups(model, lr=0.1, weight_decay=0.5))
    frozen = model.projection.weight.detach().clone()
    trained = model.output.weight.detach().clone()
    model(torch.randn(4, 8)).square().sum().backward()
    optimizer.step()
    assert torch.equal(model.projection.weight, frozen)
    assert not torch.equal(model.output.weight, trained)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"lr": -1.0}, "lr must be non-negative, got -1.0"), ({"lr": 1.0, "weight_decay": -0.1}, "weight_decay must be non-negative, got -0.1")],
)
def test_param_groups_negative_values_rejected(arguments, message):
    with pytest.raises(ValueError, match=message):
        param_groups(_model(), **arguments)
