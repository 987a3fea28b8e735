"""Tests of parameter_from_config: defaults, config values, lr scale product."""

from __future__ import annotations

import pytest
import torch

from blockspec import FillInitializationConfig, NormalInitializationConfig, OnesInitializationConfig, ParameterConfig
from blockspec.build import parameter_spec
from blockspec.layers.parameter.module import parameter_from_config


def test_parameter_from_config_defaults():
    with torch.device("meta"):
        parameter = parameter_from_config(ParameterConfig(), (3, 4), fan_in=4, num_layers=2)
    spec = parameter_spec(parameter)
    assert parameter.shape == (3, 4)
    assert parameter.is_meta
    assert spec.initialization == NormalInitializationConfig()
    assert spec.weight_decay is True
    assert spec.lr_scale == 1.0
    assert spec.fan_in == 4
    assert spec.num_layers == 2


def test_parameter_from_config_owner_defaults():
    parameter = parameter_from_config(
        ParameterConfig(), (3,), default_initialization=OnesInitializationConfig(), default_weight_decay=False
    )
    spec = parameter_spec(parameter)
    assert spec.initialization == OnesInitializationConfig()
    assert spec.weight_decay is False


def test_parameter_from_config_values_win():
    config = ParameterConfig(initialization=FillInitializationConfig(value=3.0), weight_decay=True, lr_scale=0.5)
    parameter = parameter_from_config(
        config, (3,), lr_scale=0.5, default_initialization=OnesInitializationConfig(), default_weight_decay=False
    )
    spec = parameter_spec(parameter)
    assert spec.initialization == FillInitializationConfig(value=3.0)
    assert spec.weight_decay is True
    assert spec.lr_scale == pytest.approx(0.25)


def test_parameter_from_config_zero_lr_scale_frozen():
    parameter = parameter_from_config(ParameterConfig(lr_scale=0.0), (2,))
    assert parameter.requires_grad is False
