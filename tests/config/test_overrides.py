"""Dotted-key overrides return validated copies and reject keys that do not exist."""

from __future__ import annotations

import pytest
from toy_configs import ToyAttentionConfig, ToyMambaConfig, ToyModelConfig, ToyNormalConfig

from blockspec.config import ConfigError


@pytest.fixture
def model():
    return ToyModelConfig.from_dict({"blocks": [{"mixer": {"heads": 4}}, {}], "named": {"a": {}}})


def test_override_parses_yaml_scalars(model):
    changed = model.with_overrides({"blocks.0.mixer.heads": "16", "blocks.1.dropout": "1e-1"})
    assert changed.blocks[0].mixer.heads == 16
    assert changed.blocks[1].dropout == 0.1
    assert model.blocks[0].mixer.heads == 4


def test_override_sets_default_valued_nested_field(model):
    changed = model.with_overrides({"named.a.mixer.query.bias": False})
    assert changed.named["a"].mixer.query.bias is False
    assert changed.named["a"].mixer.output.resolved.bias is False


def test_override_changes_type(model):
    changed = model.with_overrides({"blocks.1.mixer.type": "toy_mamba"})
    assert isinstance(changed.blocks[1].mixer, ToyMambaConfig)


def test_override_result_is_validated(model):
    with pytest.raises(ConfigError, match=r"blocks\[0\]\.mixer\.heads"):
        model.with_overrides({"blocks.0.mixer.heads": "0"})


def test_override_unknown_key_names_closest(model):
    with pytest.raises(ConfigError, match=r"no 'heds' at blocks\.0\.mixer\. Did you mean 'blocks\.0\.mixer\.heads'\?"):
        model.with_overrides({"blocks.0.mixer.heds": 2})


def test_override_unknown_index(model):
    with pytest.raises(ConfigError, match=r"no '5' at blocks"):
        model.with_overrides({"blocks.5.dropout": 0.1})


def test_override_reports_every_bad_key():
    config = ToyAttentionConfig()
    with pytest.raises(ConfigError) as raised:
        config.with_overrides({"hedas": 1, "query.bais": True})
    assert [issue.path for issue in raised.value.issues] == ["hedas", "query.bais"]


def test_override_type_with_new_fields_in_one_call():
    model = ToyModelConfig.from_dict({"blocks": [{}]})
    changed = model.with_overrides({"blocks.0.mixer.state_size": 3, "blocks.0.mixer.type": "toy_mamba"})
    assert changed.blocks[0].mixer == ToyMambaConfig(state_size=3)


def test_override_accepts_bracket_indices(model):
    changed = model.with_overrides({"blocks[1].dropout": 0.5})
    assert changed.blocks[1].dropout == 0.5


def test_override_shortcut_expands_like_the_file():
    config = ToyModelConfig.from_yaml("init_std: 0.1\nblocks: [{}]\n")
    assert config.blocks[0].mixer.query.init == ToyNormalConfig(std=0.1)
    changed = config.with_overrides({"init_std": "0.5"})
    assert changed.blocks[0].mixer.query.init == ToyNormalConfig(std=0.5)
    appended = config.with_overrides({"blocks": "[{}, {}]"})
    assert appended.blocks[1].mixer.query.init == ToyNormalConfig(std=0.1)


def test_override_adds_named_entry(model):
    changed = model.with_overrides({"named.b": {"dropout": 0.25}})
    assert changed.named["b"].dropout == 0.25


def test_override_rejects_unknown_named_entry_path(model):
    with pytest.raises(ConfigError, match=r"no 'c' at named\. Valid keys there: a"):
        model.with_overrides({"named.c.dropout": 0.1})


def test_override_keeps_source_after_chaining():
    config = ToyModelConfig.from_yaml("init_std: 0.1\nblocks: [{}]\n")
    changed = config.with_overrides({"hidden_size": 8}).with_overrides({"init_std": 0.3})
    assert changed.hidden_size == 8
    assert changed.blocks[0].mixer.output.init == ToyNormalConfig(std=0.15)
