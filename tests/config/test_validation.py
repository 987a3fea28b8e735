"""ConfigError: every problem in one raise, with path, value, line and did-you-mean."""

from __future__ import annotations

import pytest
from toy_configs import ToyAttentionConfig, ToyModelConfig

from blockspec.config import ConfigError


def test_error_gathers_every_problem():
    data = {
        "hidden_size": "wide",
        "blocks": [{"mixer": {"heads": 0}}, {"mixer": {"type": "toy_mamba", "state_sise": 4}}],
    }
    with pytest.raises(ConfigError) as raised:
        ToyModelConfig.from_dict(data)
    by_path = {issue.path: issue for issue in raised.value.issues}
    assert set(by_path) == {"hidden_size", "blocks[0].mixer.heads", "blocks[1].mixer.state_sise"}
    assert by_path["hidden_size"].value == "wide"
    assert by_path["blocks[0].mixer.heads"].value == 0
    assert "greater than 0" in by_path["blocks[0].mixer.heads"].message
    assert "Did you mean 'state_size'?" in by_path["blocks[1].mixer.state_sise"].message
    assert "3 problems" in str(raised.value)


def test_error_is_value_error():
    with pytest.raises(ValueError):
        ToyModelConfig.from_dict({"hidden_size": None})


def test_error_names_file_and_line(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("hidden_size: 64\nblocks:\n  - mixer:\n      heads: 2\n  - mixer:\n      heads: -1\n")
    with pytest.raises(ConfigError) as raised:
        ToyModelConfig.from_yaml(path)
    (issue,) = raised.value.issues
    assert issue.path == "blocks[1].mixer.heads"
    assert issue.location == f"{path}:6"
    assert str(path) in str(raised.value)


def test_error_cross_field_rule_names_values():
    with pytest.raises(ConfigError, match=r"named\.a\.mixer: head_groups=3 must divide heads=8"):
        ToyModelConfig.from_dict({"named": {"a": {"mixer": {"head_groups": 3}}}})


def test_error_missing_required_field():
    with pytest.raises(ConfigError, match=r"query\.init\.value: Field required"):
        ToyAttentionConfig.from_dict({"query": {"init": {"type": "toy_fill"}}})


def test_error_top_level_not_mapping():
    with pytest.raises(ConfigError, match="a config must be a mapping"):
        ToyModelConfig.from_yaml("- 1\n- 2\n")


def test_error_unknown_key_in_dict_of_configs():
    with pytest.raises(ConfigError, match=r"named\.b\.dropuot: unknown key 'dropuot'.*Did you mean 'dropout'\?"):
        ToyModelConfig.from_dict({"named": {"b": {"dropuot": 0.1}}})
