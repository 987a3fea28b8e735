"""Building modules from configs: the module registry and per-parameter metadata.

A module class registers the config class it implements with `@register_module`. A
parent builds a child with `build_module(child_config, **build_args)`, passing shared
values (hidden size, layer index, combined lr scale, peft, ...) as keyword-only
arguments. Parameters are created with `new_parameter`, which records how they are
initialized and optimized in a `ParameterSpec`, so initialization can happen later (after
a meta-device build) and optimizer groups can be derived from the model alone.
`build_model` and `materialize` do that build and that later initialization.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from .config import Config
from .layers.families import InitializationConfig

ModuleT = TypeVar("ModuleT", bound=type[nn.Module])

logger = logging.getLogger(__name__)

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
    module_class = _registered_module(config)
    if module_class is None:
        _import_modules(again=True)
        module_class = _registered_module(config)
    if module_class is not None:
        return module_class
    raise LookupError(
        f"no module is registered for {type(config).__name__} (type {config.type_name!r}); "
        f"decorate its nn.Module class with @blockspec.register_module({type(config).__name__})"
    )


def registered_modules(config_base: type[Config] = Config) -> dict[type[Config], type[nn.Module]]:
    """Return the registered module class of every config class that subclasses `config_base`."""
    _import_modules()
    return {config_class: module_class for config_class, module_class in _modules.items() if issubclass(config_class, config_base)}


def _registered_module(config: Config) -> type[nn.Module] | None:
    for config_class in type(config).__mro__:
        module_class = _modules.get(config_class)
        if module_class is not None:
            return module_class
    return None


def build_module(config: Config, **build_args: Any) -> nn.Module:
    """Build the module that implements `config`, passing `build_args` as keyword arguments."""
    return module_class_for(config)(config, **build_args)


_modules_imported = False


def _import_modules(*, again: bool = False) -> None:
    """Import the module files of the built-in layers and of plugins, which register themselves.

    Plugins list their torch-dependent module files in the `blockspec.modules` entry point
    group, so validating a config that uses a plugin type does not import torch. The
    entry points are read once, and again (`again=True`) when a lookup misses.
    """
    global _modules_imported
    if _modules_imported and not again:
        return
    from . import layers
    from .config.registry import MODULE_ENTRY_POINT_GROUP, load_plugins

    layers.import_modules()
    load_plugins()
    load_plugins(MODULE_ENTRY_POINT_GROUP)
    _modules_imported = True


@dataclass
class ParameterSpec:
    """Initialization and optimizer settings of one parameter, attached to the parameter itself."""

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


# ---------------------------------------------------------------------- building and materializing


def build_model(
    config: Config,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    seed: int = 0,
) -> nn.Module:
    """Build the model that `config` describes on the meta device, then materialize it.

    With `device="meta"` nothing is allocated; call `materialize` later. Any other device
    gets `materialize(model, device, dtype, seed)`, so a CPU build equals a meta build
    materialized later, bit for bit. When the model has LoRA adapters, every parameter
    that is not an adapter gets requires_grad=False.
    """
    with torch.device("meta"):
        model = build_module(config.resolved)
    _freeze_all_but_lora(model)
    materialize(model, device=device, dtype=dtype, seed=seed)
    total, trainable = _count_parameters(model)
    logger.info("built %s: %s parameters, %s trainable", type(model).__name__, f"{total:,}", f"{trainable:,}")
    return model


def materialize(
    model: nn.Module,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    seed: int = 0,
) -> nn.Module:
    """Allocate every parameter and buffer of `model` on `device`, initialize them, and return `model`.

    Parameters created with `new_parameter` are initialized from their spec, each with
    its own generator seeded by `seed` and the parameter's name, so a parameter's values
    depend on neither the order of construction nor the other parameters. Parameters
    without a spec are initialized by their module's `reset_parameters()`, seeded by
    `seed` and the module's name. Without that method they keep their values, which is
    allowed only for parameters that are not on the meta device.
    Afterwards `reset_buffers()` is called on every module that has it. `dtype` applies
    to floating-point parameters; buffers keep their dtype. Tied parameters stay tied.
    """
    device = torch.device(device)
    dtype = as_dtype(dtype)
    if device.type == "meta":
        return model.to(dtype=dtype) if dtype is not None else model

    _check_initializable(model)
    _allocate(model, device, dtype)
    _reset_parameters_without_spec(model, device, seed)
    _initialize_with_specs(model, seed)
    for module in model.modules():
        reset_buffers = getattr(module, "reset_buffers", None)
        if callable(reset_buffers):
            reset_buffers()
    return model


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """Return the floating-point torch dtype for a dtype or its name (`"bfloat16"`); None stays None.

    Raises ValueError for an unknown name and for a type that parameters cannot have (`"int8"`).
    """
    if dtype is None:
        return None
    value = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use a torch dtype name such as 'float32' or 'bfloat16'")
    if not value.is_floating_point:
        raise ValueError(f"dtype {dtype!r} is not a floating-point type; parameters need one such as 'float32' or 'bfloat16'")
    return value


def _freeze_all_but_lora(model: nn.Module) -> None:
    parameters = list(model.parameters())
    if not any(_is_lora(parameter) for parameter in parameters):
        return
    for parameter in parameters:
        if not _is_lora(parameter):
            parameter.requires_grad_(False)


def _is_lora(parameter: torch.Tensor) -> bool:
    spec = parameter_spec(parameter)
    return spec is not None and spec.is_lora


def _count_parameters(model: nn.Module) -> tuple[int, int]:
    parameters = list(model.parameters())
    total = sum(parameter.numel() for parameter in parameters)
    trainable = sum(parameter.numel() for parameter in parameters if parameter.requires_grad)
    return total, trainable


def _check_initializable(model: nn.Module) -> None:
    """Raise before allocating anything if a tensor cannot be allocated or would be left without values."""
    sharded = [name for name, parameter in model.named_parameters() if type(parameter.data) is not torch.Tensor]
    if sharded:
        # A DTensor reports its global shape, so allocating that shape on one device would be wrong.
        raise TypeError(
            f"cannot materialize {type(model).__name__} because parameters [{', '.join(sharded)}] are tensor "
            "subclasses such as the DTensors of FSDP2's fully_shard; materialize the model before sharding it"
        )
    missing = []
    for module_name, module in model.named_modules():
        has_reset_parameters = callable(getattr(module, "reset_parameters", None))
        has_reset_buffers = callable(getattr(module, "reset_buffers", None))
        for name, parameter in module.named_parameters(recurse=False):
            if parameter.is_meta and parameter_spec(parameter) is None and not has_reset_parameters:
                missing.append(f"parameter {_join(module_name, name)}")
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.is_meta and not has_reset_buffers:
                missing.append(f"buffer {_join(module_name, name)}")
    if missing:
        raise ValueError(
            f"cannot materialize {type(model).__name__}: {', '.join(missing)} on the meta device "
            "have no way to be initialized; create parameters with blockspec.build.new_parameter, "
            "or give the module reset_parameters() (parameters) or reset_buffers() (buffers)"
        )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _allocate(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> None:
    """Give every parameter and buffer new storage on `device`, keeping shared ones shared."""
    replacements: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for name, parameter in module._parameters.items():
            if parameter is not None:
                if id(parameter) not in replacements:
                    replacements[id(parameter)] = _allocate_parameter(parameter, device, dtype)
                module._parameters[name] = replacements[id(parameter)]
        for name, buffer in module._buffers.items():
            if buffer is not None:
                if id(buffer) not in replacements:
                    replacements[id(buffer)] = _allocate_buffer(buffer, device)
                module._buffers[name] = replacements[id(buffer)]


def _allocate_parameter(parameter: nn.Parameter, device: torch.device, dtype: torch.dtype | None) -> nn.Parameter:
    target_dtype = dtype if dtype is not None and parameter.is_floating_point() else parameter.dtype
    data = torch.empty(parameter.shape, dtype=target_dtype, device=device)
    if not parameter.is_meta:
        data.copy_(parameter.detach())
    allocated = nn.Parameter(data, requires_grad=parameter.requires_grad)
    allocated.__dict__.update(parameter.__dict__)  # the spec and any other attribute set on it
    return allocated


def _allocate_buffer(buffer: torch.Tensor, device: torch.device) -> torch.Tensor:
    if buffer.is_meta:
        return torch.empty(buffer.shape, dtype=buffer.dtype, device=device)
    return buffer.to(device)


def _reset_parameters_without_spec(model: nn.Module, device: torch.device, seed: int) -> None:
    """Call `reset_parameters()` on each module owning a parameter without a spec, under a derived seed."""
    for module_name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own or all(parameter_spec(parameter) is not None for parameter in own):
            continue
        reset_parameters = getattr(module, "reset_parameters", None)
        if not callable(reset_parameters):
            continue  # its spec-less parameters were real tensors and kept their values
        # NOTE: the non-CPU branch (forking a CUDA generator) has not been run on a GPU yet.
        devices = [] if device.type == "cpu" else [device]
        with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
            torch.manual_seed(_derive_seed(seed, module_name))
            reset_parameters()


def _initialize_with_specs(model: nn.Module, seed: int) -> None:
    from .layers.initialization.module import initialize

    for name, parameter in model.named_parameters():
        spec = parameter_spec(parameter)
        if spec is None:
            continue
        # Values are drawn on the CPU in float32 and then copied, so they are the same
        # on every device and in every dtype (up to rounding) for the same seed.
        generator = torch.Generator().manual_seed(_derive_seed(seed, name))
        try:
            values = torch.empty(parameter.shape, dtype=torch.float32)
            initialize(values, spec.initialization, fan_in=spec.fan_in, num_layers=spec.num_layers, generator=generator)
            parameter.data.copy_(values)
        except (LookupError, ValueError) as error:
            raise type(error)(f"cannot initialize parameter {name!r}: {error}") from error


def _derive_seed(seed: int, name: str) -> int:
    """Return a 63-bit seed from `seed` and a parameter or module name, stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
