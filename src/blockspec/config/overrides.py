"""Dotted-key overrides (`transformer.block.mixer.heads=8`) applied to a validated config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from .base import Config
from .errors import ConfigError, ConfigIssue, closest_match
from .serialize import dump_config

ConfigT = TypeVar("ConfigT", bound=Config)


def apply_overrides(config: ConfigT, overrides: Mapping[str, Any]) -> ConfigT:
    """Return a validated copy of `config` with each dotted key set to its value.

    Every key must name an existing field (or `type`, or an existing list index or dict
    key) of the current config; string values are parsed as YAML scalars.
    """
    data = dump_config(config, full=False)
    issues = []
    for key, value in overrides.items():
        try:
            _check_key(config, key)
        except ConfigError as error:
            issues.extend(error.issues)
            continue
        data = _assign(data, config, key.split("."), _parse_value(value))
    if issues:
        raise ConfigError(issues)
    return type(config).from_dict(data)


def _parse_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    from .yaml_io import load_yaml

    return load_yaml(value + "\n").data


def _check_key(config: Config, key: str) -> None:
    node: Any = config
    walked: list[str] = []
    parts = key.split(".")
    for index, part in enumerate(parts):
        is_last = index == len(parts) - 1
        candidates = _children(node, allow_type=is_last)
        if part not in candidates:
            suggestion = closest_match(part, candidates)
            hint = f" Did you mean {'.'.join([*walked, suggestion])!r}?" if suggestion else ""
            valid = ", ".join(candidates) or "(none)"
            raise ConfigError(
                ConfigIssue(key, f"override key does not exist: no {part!r} at {'.'.join(walked) or 'the top level'}.{hint} Valid keys there: {valid}")
            )
        walked.append(part)
        if not is_last:
            node = _child(node, part)


def _children(node: Any, *, allow_type: bool) -> list[str]:
    if isinstance(node, Config):
        names = [name for name in type(node).model_fields if name not in type(node).shortcuts]
        if allow_type and node.type_name is not None:
            names.insert(0, "type")
        return names
    if isinstance(node, Mapping):
        return [str(key) for key in node]
    if isinstance(node, (list, tuple)):
        return [str(index) for index in range(len(node))]
    return []


def _child(node: Any, part: str) -> Any:
    if isinstance(node, Config):
        return getattr(node, part)
    if isinstance(node, Mapping):
        return node[part]
    return node[int(part)]


def _assign(data: Any, node: Any, parts: list[str], value: Any) -> Any:
    """Return a copy of the dumped `data` of `node` with `parts` set to `value`."""
    part, rest = parts[0], parts[1:]
    if isinstance(data, list):
        data = list(data)
        index = int(part)
        data[index] = value if not rest else _assign(data[index], _child(node, part), rest, value)
        return data
    data = dict(data)
    if not rest:
        data[part] = value
        return data
    child = _child(node, part)
    current = data.get(part)
    if current is None:
        current = dump_config(child, full=False) if isinstance(child, Config) else _plain(child)
    data[part] = _assign(current, child, rest, value)
    return data


def _plain(value: Any) -> Any:
    from .serialize import dump_value

    return dump_value(value, full=False)
