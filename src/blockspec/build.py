"""Building modules from configs: the module registry and per-parameter metadata.

A module class registers the config class it implements with `@register_module`. A
parent builds a child with `build_module(child_config, **build_args)`, passing shared
values (hidden size, layer index, combined lr scale, peft, ...) as keyword-only
arguments. Parameters are created with `new_parameter`, which records how they are
initialized and optimized in a `ParameterSpec`, so initialization can happen later (after
a meta-device build) and optimizer groups can be derived from the model alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from .config import Config
from .layers.families import InitializationConfig

ModuleT = TypeVar("ModuleT", bound=type[nn.Module])

_modules: dict[type[Config], type[nn.Module]] = {}

SPEC_ATTRIBUTE = "_blockspec_spec"


def register_module(config_class: type[Config]) -> Callable[[ModuleT], ModuleT]:
    """Register the decorated `nn.Module` class as the implementation of `config_class`."""

    def decorator(module_class: ModuleT) -> ModuleT:
        _modules[config_class] = module_class
        return module_class

    return decorator


def module_class_for(config: Config) -> type[nn.Module]:
    """Return the module class registered for the config's class or its nearest base."""
    _import_modules()
    for config_class in type(config).__mro__:
        module_class = _modules.get(config_class)
        if module_class is not None:
            return module_class
    raise LookupError(
        f"no module is registered for {type(config).__name__} (type {config.type_name!r}); "
        f"decorate its nn.Module class with @blockspec.register_module({type(config).__name__})"
    )


def build_module(config: Config, **build_args: Any) -> nn.Module:
    """Build the module that implements `config`, passing `build_args` as keyword arguments."""
    return module_class_for(config)(config, **build_args)


def _import_modules() -> None:
    """Import the module files of the built-in layers, which register themselves."""
    from . import layers

    layers.import_modules()


@dataclass
class ParameterSpec:
    """How one parameter is initialized and optimized; attached to the parameter itself."""

    initialization: InitializationConfig
    lr_scale: float = 1.0
    """Effective lr scale: the product of every lr_scale on the parameter's path."""
    weight_decay: bool = True
    fan_in: int | None = None
    """Input features of the layer, for fan-in scaled initializations."""
    num_layers: int | None = None
    """Number of layers of the enclosing sequence, for depth-scaled initializations."""
    is_lora: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def new_parameter(
    shape: tuple[int, ...] | torch.Size,
    *,
    initialization: InitializationConfig,
    lr_scale: float = 1.0,
    weight_decay: bool = True,
    fan_in: int | None = None,
    num_layers: int | None = None,
    is_lora: bool = False,
    dtype: torch.dtype | None = None,
) -> nn.Parameter:
    """Create an uninitialized parameter (on the current default device) with its spec."""
    parameter = nn.Parameter(torch.empty(tuple(shape), dtype=dtype), requires_grad=lr_scale != 0)
    spec = ParameterSpec(
        initialization=initialization,
        lr_scale=lr_scale,
        weight_decay=weight_decay,
        fan_in=fan_in,
        num_layers=num_layers,
        is_lora=is_lora,
    )
    setattr(parameter, SPEC_ATTRIBUTE, spec)
    return parameter


def parameter_spec(parameter: torch.Tensor) -> ParameterSpec | None:
    """Return the spec recorded on a parameter by `new_parameter`, if any."""
    return getattr(parameter, SPEC_ATTRIBUTE, None)
