"""Loading a whole model config from YAML."""

from __future__ import annotations

import os
from typing import Any

from .layers.families import ModelConfig


def load_config(source: str | os.PathLike[str] | dict[str, Any]) -> ModelConfig:
    """Load and validate a model config from a YAML file, YAML text or a mapping.

    The model class is chosen by the top-level `type` key (default `lm`).
    """
    if isinstance(source, dict):
        return ModelConfig.from_dict(source)
    return ModelConfig.from_yaml(source)
