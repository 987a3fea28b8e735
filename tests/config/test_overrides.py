"""Dotted-key overrides return validated copies and reject keys that do not exist."""

from __future__ import annotations

import pytest
from toy_configs import ToyAttentionConfig, ToyMambaConfig, ToyModelConfig

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
