"""The hard-coded Hugging Face defaults table against the installed transformers config classes."""

from __future__ import annotations

import dataclasses

import pytest

transformers = pytest.importorskip("transformers")

from blockspec.convert.hf_defaults import HF_DEFAULTS, KEY_ALIASES

# Keys of the base PreTrainedConfig; they are bookkeeping and not part of the per-type table.
BASE_KEYS = {field.name for field in dataclasses.fields(transformers.PreTrainedConfig)}


def _class_defaults(model_type: str) -> dict:
    config_class = transformers.CONFIG_MAPPING[model_type]
    defaults = {}
    for field in dataclasses.fields(config_class):
        if field.name in BASE_KEYS:
            continue
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    if "rope_parameters" in defaults:
        defaults["rope_theta"] = config_class.default_theta
    return defaults


@pytest.mark.parametrize("model_type", sorted(HF_DEFAULTS))
def test_defaults_table_matches_transformers(model_type):
    expected = _class_defaults(model_type)
    table = HF_DEFAULTS[model_type]

    assert sorted(table) == sorted(expected)
    for key, value in expected.items():
        assert table[key] == value, f"{model_type}.{key}: table has {table[key]!r}, transformers {value!r}"
        assert type(table[key]) is type(value), f"{model_type}.{key}: type {type(table[key]).__name__} vs {type(value).__name__}"


@pytest.mark.parametrize("model_type", sorted(HF_DEFAULTS))
def test_key_aliases_match_transformers(model_type):
    assert KEY_ALIASES.get(model_type, {}) == dict(transformers.CONFIG_MAPPING[model_type].attribute_map)
