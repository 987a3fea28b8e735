"""JSON Schema: one branch per registered type, usable by jsonschema validators."""

from __future__ import annotations

import jsonschema
import pytest
from toy_configs import ToyModelConfig

import blockspec


@pytest.fixture(scope="module")
def toy_schema():
    return blockspec.json_schema(ToyModelConfig)


def test_schema_accepts_valid_config(toy_schema):
    data = {"hidden_size": 32, "blocks": [{"mixer": {"type": "toy_mamba", "state_size": 4}}, {"mixer": {"heads": 2}}]}
    jsonschema.validate(data, toy_schema)


@pytest.mark.parametrize(
    "data",
    [
        {"blocks": [{"mixer": {"type": "toy_mambo"}}]},
        {"blocks": [{"mixer": {"type": "toy_mamba", "heads": 2}}]},
        {"blocks": [{"activation": "tanh"}]},
        {"hiden_size": 3},
    ],
)
def test_schema_rejects_invalid_config(toy_schema, data):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, toy_schema)


def test_schema_has_field_descriptions(toy_schema):
    assert toy_schema["properties"]["hidden_size"]["description"] == "Width of the residual stream."
    mixer = toy_schema["$defs"]["ToyMixerConfig"]
    branches = [_resolve(toy_schema, branch) for branch in mixer["oneOf"]]
    type_names = [branch["properties"]["type"]["const"] for branch in branches]
    assert "toy_attention" in type_names
    assert "toy_mamba" in type_names


def _resolve(schema, node):
    if "$ref" not in node:
        return node
    return schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
