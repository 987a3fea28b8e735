"""Tests of build_model / ModelConfig.build and materialize: meta builds, seeding, dtypes, ties."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from toy_weights_model import HIDDEN, TinyModelConfig

from blockspec import ModelConfig
from blockspec.build import materialize, new_parameter, parameter_spec
from blockspec.layers.initialization.config import FanInNormalInitializationConfig, OnesInitializationConfig

def _config(**data) -> TinyModelConfig:
    return ModelConfig.from_dict({"type": "test_tiny_model", **data})


def _assert_same_state(first: nn.Module, second: nn.Module) -> None:
    first_state, second_state = first.state_dict(), second.state_dict()
    assert first_state.keys() == second_state.keys()
    for name in first_state:
        assert torch.equal(first_state[name], second_state[name]), name


def test_build_meta_allocates_nothing():
    model = _config().build(device="meta")
    assert all(parameter.is_meta for parameter in model.parameters())
    assert model.table.is_meta
    assert parameter_spec(model.projection.weight).fan_in == HIDDEN
    assert parameter_spec(model.normalization.weight).initialization == OnesInitializationConfig()


def test_build_cpu_equals_meta_then_materialize():
    built = _config().build(seed=3)
    later = materialize(_config().build(device="meta"), device="cpu", seed=3)
    _assert_same_state(built, later)
    assert torch.equal(built.table, torch.arange(HIDDEN, dtype=torch.float32))
    assert torch.equal(built.normalization.weight, torch.ones(HIDDEN))


def test_build_seed_changes_values():
    first = _config().build(seed=0)
    second = _config().build(seed=1)
    assert not torch.equal(first.projection.weight, second.projection.weight)
    assert not torch.equal(first.plain.weight, second.plain.weight)
    assert torch.equal(first.projection.weight, _config().build(seed=0).projection.weight)


def test_build_values_independent_of_other_parameters():
    alone = _config().build()
    with_extra = _config(extra_layer=True).build()
    assert torch.equal(alone.projection.weight, with_extra.projection.weight)
    assert torch.equal(alone.output.weight, with_extra.output.weight)


def test_build_parameters_differ_by_name():
    model = _config().build()
    assert not torch.equal(model.projection.weight, model.output.weight)


def test_build_initialization_statistics():
    model = _config(projection={"weight_initialization": {"type": "normal", "std": 0.5}}).build()
    assert model.projection.weight.std().item() == pytest.approx(0.5, rel=0.3)


def test_build_bfloat16_rounds_float32_values():
    full = _config().build()
    half = _config().build(dtype="bfloat16")
    assert half.projection.weight.dtype == torch.bfloat16
    assert half.plain.weight.dtype == torch.bfloat16
    assert half.table.dtype == torch.float32
    assert torch.equal(half.projection.weight, full.projection.weight.to(torch.bfloat16))


def test_build_meta_with_dtype():
    model = _config().build(device="meta", dtype=torch.float16)
    assert model.projection.weight.dtype == torch.float16
    assert model.projection.weight.is_meta
    assert parameter_spec(model.projection.weight) is not None


def test_build_unknown_dtype_rejected():
    with pytest.raises(ValueError, match="unknown dtype 'float7'; use a torch dtype name such as 'float32'"):
        _config().build(dtype="float7")


def test_materialize_keeps_ties():
    model = materialize(_config(tied=True).build(device="meta"))
    assert model.output.weight is model.projection.weight
    assert parameter_spec(model.output.weight) is not None
    assert not model.output.weight.is_meta
    # projection/output weight (shared), norm weight, plain weight and bias.
    assert len(list(model.parameters())) == 4


def test_materialize_keeps_requires_grad():
    model = _config(output={"lr_scale": 0.0}).build()
    assert model.output.weight.requires_grad is False
    assert model.projection.weight.requires_grad is True
    assert isinstance(model.output.weight, nn.Parameter)


def test_materialize_leaves_global_rng_alone():
    state = torch.get_rng_state()
    _config().build()
    assert torch.equal(torch.get_rng_state(), state)


def test_materialize_real_model_reinitializes():
    model = _config().build(seed=0)
    with torch.no_grad():
        model.projection.weight.zero_()
        model.plain.weight.zero_()
        model.table.zero_()
    materialize(model, seed=0)
    _assert_same_state(model, _config().build(seed=0))


def test_materialize_keeps_real_parameter_without_spec():
    module = nn.Module()
    module.kept = nn.Parameter(torch.arange(3.0))
    materialize(module, dtype=torch.float64)
    assert torch.equal(module.kept, torch.arange(3.0, dtype=torch.float64))


def test_materialize_meta_parameter_without_spec_rejected():
    module = nn.Module()
    with torch.device("meta"):
        module.orphan = nn.Parameter(torch.empty(3))
        module.table = nn.Module()
        module.table.register_buffer("values", torch.empty(2))
    with pytest.raises(ValueError, match=r"parameter orphan, buffer table\.values on the meta device have no way"):
        materialize(module)
    assert module.orphan.is_meta


def test_materialize_initialization_error_names_parameter():
    module = nn.Module()
    with torch.device("meta"):
        module.weight = new_parameter((3,), initialization=FanInNormalInitializationConfig())
    with pytest.raises(ValueError, match="cannot initialize parameter 'weight': initialization type 'fan_in_normal' needs"):
        materialize(module)


def test_build_lora_freezes_other_parameters():
    model = _config(peft={"type": "lora", "rank": 2}, projection={"apply_peft": True}).build()
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable == ["projection.lora_a", "projection.lora_b"]


def test_build_logs_parameter_count(caplog):
    with caplog.at_level(logging.INFO, logger="blockspec.build"):
        _config().build(device="meta")
    # 2 linears of 8 x 8, a norm weight of 8, and nn.Linear(8, 2) with bias.
    assert "built TinyModel: 154 parameters, 154 trainable" in caplog.text


def test_materialize_sharded_parameter_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # one process: keep gloo on loopback
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

        module = nn.Module()
        module.weight = nn.Parameter(distribute_tensor(torch.zeros(4, 3), init_device_mesh("cpu", (1,)), [Shard(0)]))
        with pytest.raises(TypeError, match=r"parameters \[weight\] are tensor subclasses .* materialize the model before sharding it"):
            materialize(module)
    finally:
        torch.distributed.destroy_process_group()
