"""JSON Schema of model configs, with one branch per registered type of every family."""

from __future__ import annotations

from typing import Any

from .base import Config


def json_schema(config_class: type[Config] | None = None) -> dict[str, Any]:
    """Return the JSON Schema of `config_class` (default: the model config family).

    Every polymorphic field becomes a `oneOf` over the registered types, distinguished by
    `type`; each field carries its description. Editors use it to complete and check
    YAML files (for example through a `# yaml-language-server: $schema=...` comment).
    """
    if config_class is None:
        from ..layers.families import ModelConfig

        config_class = ModelConfig
    from .registry import load_plugins

    load_plugins()
    schema = config_class.model_json_schema(mode="validation")
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    return schema
