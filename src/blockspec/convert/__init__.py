"""Import and export of Hugging Face checkpoints and import of GGUF files.

The config functions need no torch; the weight functions (`load_hf`, `save_hf`,
`load_gguf`) import it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .hf_config import SUPPORTED_MODEL_TYPES, config_from_hf
from .hf_export import config_to_hf

__all__ = ["SUPPORTED_MODEL_TYPES", "CheckpointError", "config_from_hf", "config_to_hf", "load_gguf", "load_hf", "save_hf"]

_LAZY = {
    "CheckpointError": "blockspec.convert.hf_weights",
    "load_hf": "blockspec.convert.hf_weights",
    "save_hf": "blockspec.convert.hf_weights",
    "load_gguf": "blockspec.convert.gguf",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'blockspec.convert' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
