"""Dotted-key overrides (`transformer.block.mixer.heads=8`) applied to a validated config.

Overrides edit the plain data the config was loaded from (or, for a config built in
Python, its minimal dump) and validate the result again. An override therefore means
what the same edit of the YAML file would mean. Shortcuts such as `init_std` can be
overridden and still expand, and a new `type` can be set together with its fields.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from .base import Config, _dumped_default, config_class_in
from .errors import ConfigError, ConfigIssue, closest_match
from .serialize import dump_config
from .validation import _is_direct, _select

ConfigT = TypeVar("ConfigT", bound=Config)

_INDEX = re.compile(r"\[(\d+)\]")


def apply_overrides(config: ConfigT, overrides: Mapping[str, Any]) -> ConfigT:
    """Return a validated copy of `config` with each dotted key set to its value.

    Keys name fields (`type` included), list indices (`overrides.0.layers` or
    `overrides[0].layers`) and dict keys. String values are parsed as YAML scalars. Keys
    are applied from the shallowest to the deepest, a `type` before its siblings, so
    `{"peft.type": "lora", "peft.rank": 4}` works in one call.
    """
    source = config.source_data()
    data = copy.deepcopy(source) if source is not None else dump_config(config, full=False)
    parts_by_key = {key: _split(key) for key in overrides}
    ordered = sorted(overrides, key=lambda key: (len(parts_by_key[key]), parts_by_key[key][-1] != "type"))
    issues = []
    for key in ordered:
        try:
            data = _assign(type(config), data, parts_by_key[key], _parse_value(overrides[key]), key)
        except ConfigError as error:
            issues.extend(error.issues)
    if issues:
        raise ConfigError(issues)
    return type(config).from_dict(data)


def _split(key: str) -> list[str]:
    return _INDEX.sub(r".\1", key).split(".")


def _parse_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    from .yaml_io import load_yaml

    return load_yaml(value + "\n").data


def _assign(root: type[Config], data: Any, parts: list[str], value: Any, key: str) -> Any:
    """Return a copy of `data` (plain data of class `root`) with `parts` set to `value`."""
    return _assign_in(_select(root, data), data, parts, value, key, walked=[])


def _assign_in(config_class: type[Config] | None, node: Any, parts: list[str], value: Any, key: str, walked: list[str]) -> Any:
    part, rest = parts[0], parts[1:]
    if config_class is not None:
        return _assign_field(config_class, node, part, rest, value, key, walked)
    if isinstance(node, Mapping):
        # A plain mapping field (such as an override's `set`) takes any key.
        child = node.get(part)
        updated = value if not rest else _assign_in(None, child, rest, value, key, [*walked, part])
        return {**node, part: updated}
    raise _unknown(key, part, walked, [])


def _assign_field(config_class: type[Config], node: Any, part: str, rest: list[str], value: Any, key: str, walked: list[str]) -> Any:
    node = dict(node) if isinstance(node, Mapping) else {}
    candidates = list(config_class.model_fields)
    if config_class.family is not None:
        candidates.insert(0, "type")
    if part not in candidates or (part == "type" and rest):
        raise _unknown(key, part, walked, candidates)
    if not rest:
        node[part] = value
        return node

    annotation = config_class.model_fields[part].annotation
    child_class = config_class_in(annotation)
    child = node.get(part)
    if child is None:
        child = _dumped_default(config_class, part)
    if child_class is not None and not _is_direct(annotation):
        node[part] = _assign_item(child_class, child, rest, value, key, [*walked, part])
    elif child_class is not None:
        node[part] = _assign_in(_select(child_class, child if child is not None else {}), child, rest, value, key, [*walked, part])
    else:
        node[part] = _assign_in(None, child, rest, value, key, [*walked, part])
    return node


def _assign_item(item_class: type[Config], items: Any, parts: list[str], value: Any, key: str, walked: list[str]) -> Any:
    """Assign inside one item of a list or dict of configs; a new dict key may be added as a whole."""
    index, rest = parts[0], parts[1:]
    if isinstance(items, list):
        candidates = [str(position) for position in range(len(items))]
        if index not in candidates:
            raise _unknown(key, index, walked, candidates)
        position = int(index)
        updated = value if not rest else _assign_in(_select(item_class, items[position]), items[position], rest, value, key, [*walked, index])
        return [*items[:position], updated, *items[position + 1 :]]
    items = dict(items) if isinstance(items, Mapping) else {}
    if index not in items and rest:
        raise _unknown(key, index, walked, list(items))
    updated = value if not rest else _assign_in(_select(item_class, items[index]), items[index], rest, value, key, [*walked, index])
    items[index] = updated
    return items


def _unknown(key: str, part: str, walked: list[str], candidates: list[str]) -> ConfigError:
    suggestion = closest_match(part, candidates)
    hint = f" Did you mean {'.'.join([*walked, suggestion])!r}?" if suggestion else ""
    valid = ", ".join(candidates) or "(none)"
    where = ".".join(walked) or "the top level"
    message = f"override key does not exist: no {part!r} at {where}.{hint} Valid keys there: {valid}"
    return ConfigError(ConfigIssue(key, message))
