"""Validate plain data into a config, turning pydantic errors into one `ConfigError`."""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from .base import Config, _is_plain, config_class_in
from .errors import ConfigError, ConfigIssue, did_you_mean, format_path

ConfigT = TypeVar("ConfigT", bound=Config)

# Pydantic error types whose `input` is the whole parent node rather than an offending value.
_NO_INPUT_TYPES = {"missing"}
_BOOL_ERRORS = {"bool_type", "bool_parsing"}


def validate(cls: type[ConfigT], data: Any, *, source: Any = None) -> ConfigT:
    """Validate `data` as `cls`; `source` is the LoadedYaml it came from, if any."""
    if not isinstance(data, Mapping):
        name = getattr(source, "source", None)
        message = f"a config must be a mapping of field names to values, not {type(data).__name__}"
        if isinstance(data, str) and name == "<string>":
            message += "; if this is a file path, no such file exists"
        raise ConfigError(ConfigIssue(path="", message=message, value=data), source=name)
    if _is_plain(data):
        # Every config node keeps a reference to its part of the data for overrides, so
        # the nodes share this private copy rather than the caller's mutable objects.
        data = copy.deepcopy(data)
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        raise config_error(cls, data, error, source) from None


def config_error(cls: type[Config], data: Any, error: ValidationError, source: Any = None) -> ConfigError:
    """Convert a pydantic ValidationError on `data` into a ConfigError with paths and lines."""
    issues = []
    for detail in _merge_union_branches(cls, data, error.errors(include_url=False)):
        loc = tuple(detail["loc"])
        message = _message(cls, data, detail)
        location = source.location(loc) if source is not None else None
        if detail["type"] in _NO_INPUT_TYPES:
            issues.append(ConfigIssue(format_path(loc), message, location=location))
        else:
            issues.append(ConfigIssue(format_path(loc), message, detail.get("input"), location))
    return ConfigError(issues, source=getattr(source, "source", None))


def _merge_union_branches(cls: type[Config], data: Any, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge the per-branch errors pydantic gives for a union field (`layers.int`, `layers.str`, ...) into one."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    result = []
    for detail in details:
        loc = tuple(detail["loc"])
        field_loc = _union_field_loc(cls, data, loc)
        if field_loc is None:
            result.append(detail)
            continue
        expected = detail["msg"].removeprefix("Input should be ")
        inner = loc[len(field_loc) + 1 :]
        if inner:
            # The error is inside one branch, such as an item of the list in `list[int]`.
            expected = f"{loc[len(field_loc)]} with {format_path(inner)} {expected}"
        if field_loc in merged:
            if expected not in merged[field_loc]["expected"]:
                merged[field_loc]["expected"].append(expected)
            continue
        entry = {"type": "union", "loc": field_loc, "input": _item_at(data, field_loc), "expected": [expected]}
        merged[field_loc] = entry
        result.append(entry)
    for entry in merged.values():
        entry["msg"] = "Input should be " + ", or ".join(entry.pop("expected"))
    return result


def _union_field_loc(cls: type[Config], data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Return the location of the union field that `loc` points into through a branch tag, if any."""
    for end in range(1, len(loc)):
        owner = class_at(cls, data, loc[: end - 1])
        name = loc[end - 1]
        if owner is None or name not in owner.model_fields or not isinstance(loc[end], str):
            continue
        annotation = owner.model_fields[name].annotation
        if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
            continue
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) > 1:
            return loc[:end]
    return None


def _item_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        data = _item(data, part)
    return data


def _message(cls: type[Config], data: Any, detail: Mapping[str, Any]) -> str:
    error_type = detail["type"]
    loc = tuple(detail["loc"])
    if error_type == "extra_forbidden":
        owner = class_at(cls, data, loc[:-1])
        if owner is not None:
            key = str(loc[-1])
            allowed = [name for name in owner.model_fields]
            return (
                f"unknown key {key!r} for {_describe(owner)}.{did_you_mean(key, allowed)} "
                f"Valid keys: {', '.join(allowed) or '(none)'}"
            )
        return "unknown key"
    if error_type == "missing":
        return "Field required; add it to the config"
    message = detail["msg"] or error_type
    if error_type == "value_error":
        message = message.removeprefix("Value error, ")
    elif error_type in _BOOL_ERRORS:
        message += "; write true or false"
    return message


def _describe(config_class: type[Config]) -> str:
    if config_class.family is not None and config_class.type_name is not None:
        return f"{config_class.family.name} type {config_class.type_name!r}"
    return config_class.__name__


def class_at(root: type[Config], data: Any, loc: tuple[Any, ...]) -> type[Config] | None:
    """Return the config class that validates the node at `loc` inside raw `data`."""
    config_class = _select(root, data)
    node = data
    container: Any = None  # annotation of a list or dict of configs whose index comes next
    for part in loc:
        if container is not None:
            node = _item(node, part)
            config_class = _select(config_class_in(container), node)
            container = None
            continue
        if config_class is None or part not in config_class.model_fields:
            return None
        annotation = config_class.model_fields[part].annotation
        node = _item(node, part)
        child_class = config_class_in(annotation)
        if child_class is not None and not _is_direct(annotation):
            container, config_class = annotation, None
        else:
            config_class = _select(child_class, node) if child_class is not None else None
    return config_class if container is None else None


def _is_direct(annotation: Any) -> bool:
    """Return False for a list or dict of configs, where the next path part is an index."""
    origins = {typing.get_origin(arg) for arg in (annotation, *typing.get_args(annotation))}
    return not origins & {list, dict, tuple}


def _item(node: Any, part: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _select(config_class: type[Config], node: Any) -> type[Config] | None:
    if not isinstance(node, Mapping):
        return config_class
    try:
        return config_class._select_class(node)
    except ValidationError:
        return None
