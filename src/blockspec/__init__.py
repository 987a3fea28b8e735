"""blockspec: typed YAML configs for language models, built into PyTorch modules.

Importing this package does not import torch: configs validate without it. The names
that need torch (building, initialization, optimizer groups, generation, conversion)
are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import (
    PLUGIN_ENTRY_POINT_GROUP,
    Config,
    ConfigError,
    ConfigIssue,
    families,
    load_plugins,
)
from .config.schema import json_schema
from .layers import *  # noqa: F403  (the config classes of every layer)
from .layers import __all__ as _layer_names
from .loading import load_config

__version__ = "0.1.0"

# Public names that need torch: name -> module that defines it.
_LAZY = {
    "register_module": "blockspec.build",
    "build_module": "blockspec.build",
    "materialize": "blockspec.build",
    "parameter_report": "blockspec.report",
    "param_groups": "blockspec.optim",
    "merge_lora": "blockspec.layers.linear.module",
    "lora_state_dict": "blockspec.layers.linear.module",
    "generate": "blockspec.generation",
    "KVCache": "blockspec.generation",
    "LanguageModelOutput": "blockspec.layers.language_model.module",
    "convert": "blockspec.convert",
}

__all__ = [
    "PLUGIN_ENTRY_POINT_GROUP",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "__version__",
    "families",
    "json_schema",
    "load_config",
    "load_plugins",
    *_layer_names,
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'blockspec' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith(f".{name}") else getattr(module, name)
    globals()[name] = value
    return value
