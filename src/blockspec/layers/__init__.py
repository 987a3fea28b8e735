"""Layer configs (torch-free) and, imported on demand, the modules that implement them."""

from __future__ import annotations

import importlib

from . import families
from .attention import config as _attention
from .block import config as _block
from .families import *  # noqa: F403
from .initialization import config as _initialization
from .language_model import config as _language_model
from .linear import config as _linear
from .mlp import config as _mlp
from .normalization import config as _normalization
from .parameter import config as _parameter

_CONFIG_MODULES = [_initialization, _parameter, _linear, _normalization, _attention, _mlp, _block, _language_model]

for _module in _CONFIG_MODULES:
    globals().update({name: getattr(_module, name) for name in _module.__all__})

__all__ = [*families.__all__, *(name for module in _CONFIG_MODULES for name in module.__all__)]

_MODULE_PACKAGES = ["initialization", "parameter", "linear", "normalization", "attention", "mlp", "block", "language_model"]


def import_modules() -> None:
    """Import every built-in `module.py`, registering the nn.Module of each config (needs torch)."""
    for package in _MODULE_PACKAGES:
        importlib.import_module(f"{__name__}.{package}.module")
