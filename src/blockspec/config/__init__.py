"""Torch-free config machinery: the Config base, families, YAML, errors, overrides, schema."""

from .base import Config
from .errors import ConfigError, ConfigIssue
from .registry import PLUGIN_ENTRY_POINT_GROUP, Family, families, load_plugins

__all__ = [
    "PLUGIN_ENTRY_POINT_GROUP",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Family",
    "families",
    "load_plugins",
]
