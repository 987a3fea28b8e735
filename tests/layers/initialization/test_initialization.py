"""Tests of the initialization functions: exact fills, distribution statistics, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from blockspec import (
    DepthScaledNormalInitializationConfig,
    FanInNormalInitializationConfig,
    FillInitializationConfig,
    InitializationConfig,
    KaimingUniformInitializationConfig,
    NormalInitializationConfig,
    OnesInitializationConfig,
    UniformInitializationConfig,
    ZerosInitializationConfig,
)
from blockspec.layers.initialization.module import initialize, register_initializer

SAMPLES = 200_000


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _draw(config: InitializationConfig, size: int = SAMPLES, **kwargs) -> torch.Tensor:
    return initialize(torch.empty(size), config, generator=_generator(), **kwargs)


def test_initialize_constant_types():
    assert torch.equal(_draw(FillInitializationConfig(value=0.5), 7), torch.full((7,), 0.5))
    assert torch.equal(_draw(ZerosInitializationConfig(), 7), torch.zeros(7))
    assert torch.equal(_draw(OnesInitializationConfig(), 7), torch.ones(7))


def test_initialize_normal_statistics():
    values = _draw(NormalInitializationConfig(mean=0.1, std=0.02))
    assert values.mean().item() == pytest.approx(0.1, abs=2e-4)
    assert values.std().item() == pytest.approx(0.02, rel=1e-2)


def test_initialize_normal_two_sided_truncation():
    values = _draw(NormalInitializationConfig(std=0.02, low=-0.04, high=0.04))
    assert values.min().item() >= -0.04
    assert values.max().item() <= 0.04
    # The std of a normal truncated at +-2 std is 0.8796 std.
    assert values.std().item() == pytest.approx(0.02 * 0.8796, rel=1e-2)
    assert values.mean().item() == pytest.approx(0.0, abs=2e-4)


def test_initialize_normal_one_sided_truncation():
    values = _draw(NormalInitializationConfig(mean=0.0, std=1.0, low=0.0), 1_000_000)
    assert torch.isfinite(values).all()
    assert values.min().item() >= 0.0
    # Half-normal mean: std * sqrt(2 / pi).
    assert values.mean().item() == pytest.approx(math.sqrt(2 / math.pi), rel=1e-2)
    assert values.max().item() > 4.0


def test_initialize_normal_upper_bound_only():
    values = _draw(NormalInitializationConfig(mean=1.0, std=0.5, high=1.0))
    assert torch.isfinite(values).all()
    assert values.max().item() <= 1.0
    assert values.mean().item() == pytest.approx(1.0 - 0.5 * math.sqrt(2 / math.pi), rel=1e-2)


def test_initialize_normal_zero_std_truncated():
    values = _draw(NormalInitializationConfig(mean=0.5, std=0.0, low=-0.1, high=0.2), 5)
    assert torch.equal(values, torch.full((5,), 0.2))


def test_initialize_uniform_range():
    values = _draw(UniformInitializationConfig(low=-0.5, high=0.25))
    assert values.min().item() >= -0.5
    assert values.max().item() < 0.25
    assert values.mean().item() == pytest.approx(-0.125, abs=2e-3)


def test_initialize_fan_in_normal_std():
    values = _draw(FanInNormalInitializationConfig(scale=2.0), fan_in=64)
    assert values.std().item() == pytest.approx(2.0 / 8.0, rel=1e-2)


def test_initialize_depth_scaled_normal_std():
    values = _draw(DepthScaledNormalInitializationConfig(std=0.02), num_layers=8)
    assert values.std().item() == pytest.approx(0.02 / 4.0, rel=1e-2)


def test_initialize_kaiming_uniform_matches_torch():
    expected = torch.nn.init.kaiming_uniform_(torch.empty(16, 48), a=math.sqrt(5), generator=_generator(3))
    actual = initialize(torch.empty(16, 48), KaimingUniformInitializationConfig(), fan_in=48, generator=_generator(3))
    assert torch.equal(actual, expected)


@pytest.mark.parametrize(
    ("config", "argument"),
    [
        (FanInNormalInitializationConfig(), "fan_in"),
        (KaimingUniformInitializationConfig(), "fan_in"),
        (DepthScaledNormalInitializationConfig(), "num_layers"),
    ],
)
def test_initialize_missing_context_rejected(config, argument):
    with pytest.raises(ValueError, match=f"'{config.type_name}' needs a positive {argument}, got None"):
        initialize(torch.empty(4), config)


def test_initialize_low_precision_rounds_float32_draw():
    config = NormalInitializationConfig(std=1.0)
    full = initialize(torch.empty(1000), config, generator=_generator(5))
    half = initialize(torch.empty(1000, dtype=torch.bfloat16), config, generator=_generator(5))
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, full.to(torch.bfloat16))


def test_initialize_same_seed_same_values():
    config = NormalInitializationConfig()
    assert torch.equal(_draw(config, 100), _draw(config, 100))


def test_initialize_unregistered_type_rejected():
    class UnregisteredInitializationConfig(InitializationConfig, type_name="test_unregistered_init"):
        pass

    with pytest.raises(LookupError, match=r"@register_initializer\(UnregisteredInitializationConfig\)"):
        initialize(torch.empty(3), UnregisteredInitializationConfig())


def test_initialize_plugin_type():
    class ArangeInitializationConfig(InitializationConfig, type_name="test_arange_init"):
        start: float = 0.0
        """First value."""

    @register_initializer(ArangeInitializationConfig)
    def _arange(config, tensor, **_):
        tensor.copy_(torch.arange(tensor.numel(), dtype=tensor.dtype) + config.start)

    loaded = InitializationConfig.from_dict({"type": "test_arange_init", "start": 2.0})
    assert torch.equal(initialize(torch.empty(3), loaded), torch.tensor([2.0, 3.0, 4.0]))


@settings(max_examples=200, deadline=None)
@given(
    mean=st.floats(-10, 10),
    std=st.floats(0, 5),
    low_offset=st.one_of(st.none(), st.floats(-50, 50)),
    width=st.one_of(st.none(), st.floats(1e-3, 50)),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
)
def test_initialize_truncated_normal_within_bounds(mean, std, low_offset, width, dtype):
    # Bounds are given relative to the mean in units of std, including far tails where erf rounds to 1.
    low = None if low_offset is None else mean + low_offset * std
    high = None if width is None else (low if low is not None else mean) + width * max(std, 1e-3)
    if low is not None and high is not None and low >= high:
        return
    config = NormalInitializationConfig(mean=mean, std=std, low=low, high=high)
    values = initialize(torch.empty(2000, dtype=dtype), config, generator=_generator()).double()
    assert torch.isfinite(values).all()
    if low is not None:
        assert values.min().item() >= torch.tensor(low, dtype=dtype).double().item()
    if high is not None:
        assert values.max().item() <= torch.tensor(high, dtype=dtype).double().item()
