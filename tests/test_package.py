"""The public API: exported names, torch-free validation, the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import blockspec
from blockspec.cli import main
from blockspec.config.yaml_io import load_yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES / "smollm2-135m.yaml"


@pytest.mark.parametrize("name", blockspec.__all__)
def test_exported_name_imports(name):
    assert getattr(blockspec, name) is not None


def test_load_config_does_not_import_torch():
    code = (
        "import sys, blockspec\n"
        f"config = blockspec.load_config({str(EXAMPLE)!r})\n"
        "config.to_yaml(resolved=True)\n"
        "blockspec.json_schema()\n"
        "assert config.hidden_size == 576, config.hidden_size\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_schema_validates_every_example():
    schema = blockspec.json_schema()
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert len(paths) >= 9
    for path in paths:
        jsonschema.validate(load_yaml(path).data, schema)


def test_schema_rejects_broken_example():
    schema = blockspec.json_schema()
    data = load_yaml(EXAMPLE).data
    data["transformer"]["block"]["mixer"]["type"] = "atention"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_cli_show_applies_overrides(capsys):
    assert main(["show", str(EXAMPLE), "--set", "transformer.num_layers=2"]) == 0
    assert "num_layers: 2" in capsys.readouterr().out


def test_cli_validate_reports_error(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("type: lm\nhidden_size: 64\nembeddings: {vocab_size: 10}\ntransformer: {num_layers: 2, blokc: {}}\n")
    assert main(["validate", str(broken)]) == 1
    error = capsys.readouterr().err
    assert "transformer.blokc" in error
    assert f"{broken}:4" in error


def test_cli_schema_is_json(capsys):
    assert main(["schema"]) == 0
    assert "oneOf" in json.loads(capsys.readouterr().out)["$defs"]["MixerConfig"]
