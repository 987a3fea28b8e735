"""Registries of config families: `type` name -> config class, open to plugins."""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import did_you_mean

if TYPE_CHECKING:
    from .base import Config

logger = logging.getLogger(__name__)

PLUGIN_ENTRY_POINT_GROUP = "blockspec.plugins"
MODULE_ENTRY_POINT_GROUP = "blockspec.modules"
"""Entry points of plugin module files (needing torch), imported only when a model is built."""

_families: dict[str, Family] = {}
_loaded_entry_points: set[str] = set()
_failed_entry_points: dict[str, str] = {}


@dataclass
class Family:
    """A polymorphic config family: its base class, default type and registered types."""

    name: str
    base: type[Config]
    default_type: str | None
    types: dict[str, type[Config]] = field(default_factory=dict)

    def register(self, type_name: str, config_class: type[Config]) -> None:
        existing = self.types.get(type_name)
        if existing is not None and _qualified_name(existing) != _qualified_name(config_class):
            raise TypeError(
                f"cannot register {_qualified_name(config_class)} as {self.name} type {type_name!r}: "
                f"it is already registered by {_qualified_name(existing)}; choose another type name"
            )
        self.types[type_name] = config_class

    def lookup(self, type_name: str) -> type[Config] | None:
        """Return the class registered as `type_name`, loading plugins if it is not known yet."""
        if type_name not in self.types:
            load_plugins()
        return self.types.get(type_name)

    def unknown_type_message(self, type_name: object, allowed: list[str]) -> str:
        names = ", ".join(sorted(allowed)) or "(none)"
        hint = did_you_mean(type_name, allowed) if isinstance(type_name, str) else ""
        shown = repr(type_name) if len(repr(type_name)) <= 60 else repr(type_name)[:57] + "..."
        message = (
            f"unknown {self.name} type {shown}; registered types: {names}.{hint} "
            f"New types are registered by subclassing the {self.base.__name__} class "
            f"or through the {PLUGIN_ENTRY_POINT_GROUP!r} entry point group."
        )
        for key, reason in _failed_entry_points.items():
            message += f" Plugin {key} failed to load ({reason}), so its types are missing."
        return message


def create_family(name: str, base: type[Config], default_type: str | None) -> Family:
    if name in _families:
        raise TypeError(f"config family {name!r} is already defined by {_qualified_name(_families[name].base)}")
    family = Family(name=name, base=base, default_type=default_type)
    _families[name] = family
    return family


def families() -> dict[str, Family]:
    """Return every config family by name."""
    return dict(_families)


def load_plugins(group: str = PLUGIN_ENTRY_POINT_GROUP) -> None:
    """Import every not yet loaded entry point of `group` (default `blockspec.plugins`).

    A plugin registers its types as a side effect of being imported. A failing plugin is
    logged and skipped so that one broken package does not break every config.
    """
    for entry_point in importlib.metadata.entry_points(group=group):
        key = f"{entry_point.name}={entry_point.value}"
        if key in _loaded_entry_points:
            continue
        _loaded_entry_points.add(key)
        try:
            entry_point.load()
        except Exception as error:
            _failed_entry_points[key] = f"{type(error).__name__}: {error}"
            logger.exception("Failed to load blockspec plugin %s", key)


def _qualified_name(config_class: type) -> str:
    # A class defined again by re-importing its module has the same qualified name, so it
    # replaces the old one. A different class under the same type name is an error.
    return f"{config_class.__module__}.{config_class.__qualname__}"
