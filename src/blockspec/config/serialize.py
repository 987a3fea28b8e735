"""Config -> plain data, by the runtime class of every node so subclass fields survive."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

from .base import Config


def dump_config(config: Config, *, full: bool) -> dict[str, Any]:
    """Return `config` as plain data.

    With `full=False` a field is written only when it differs from its declared default;
    with `full=True` every field is written. Shortcut fields are never written because
    they have been expanded into the fields they stand for.
    """
    data: dict[str, Any] = {}
    if config.type_name is not None:
        data["type"] = config.type_name
    for name, field in type(config).model_fields.items():
        if name in type(config).shortcuts:
            continue
        value = dump_value(getattr(config, name), full=full)
        if not full and _is_default(field, value):
            continue
        data[name] = value
    return data


def dump_value(value: Any, *, full: bool) -> Any:
    if isinstance(value, Config):
        return dump_config(value, full=full)
    if isinstance(value, (list, tuple)):
        return [dump_value(item, full=full) for item in value]
    if isinstance(value, dict):
        return {key: dump_value(item, full=full) for key, item in value.items()}
    return value


def _is_default(field: Any, dumped: Any) -> bool:
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return False
    return dump_value(default, full=False) == dumped
