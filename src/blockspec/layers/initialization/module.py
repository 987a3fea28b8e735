"""Initialization functions that fill a tensor in place as its `InitializationConfig` specifies.

Each config class maps to one function registered with `@register_initializer`; a
plugin that adds an initialization type registers its function the same way. Every
function takes a `torch.Generator`, so `materialize` can seed each parameter on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, TypeVar

import torch

from ..families import InitializationConfig
from .config import (
    DepthScaledNormalInitializationConfig,
    FanInNormalInitializationConfig,
    FillInitializationConfig,
    KaimingUniformInitializationConfig,
    NormalInitializationConfig,
    OnesInitializationConfig,
    UniformInitializationConfig,
    ZerosInitializationConfig,
)

__all__ = ["Initializer", "initialize", "register_initializer"]


class Initializer(Protocol):
    """Fill `tensor` in place. `fan_in` and `num_layers` are None when the owning layer does not provide them."""

    def __call__(
        self,
        config: InitializationConfig,
        tensor: torch.Tensor,
        *,
        fan_in: int | None,
        num_layers: int | None,
        generator: torch.Generator | None,
    ) -> None: ...


InitializerT = TypeVar("InitializerT", bound=Callable[..., None])

_initializers: dict[type[InitializationConfig], Initializer] = {}


def register_initializer(config_class: type[InitializationConfig]) -> Callable[[InitializerT], InitializerT]:
    """Register the decorated function as the initializer of `config_class` and its subclasses."""

    def decorator(function: InitializerT) -> InitializerT:
        _initializers[config_class] = function
        return function

    return decorator


@torch.no_grad()
def initialize(
    tensor: torch.Tensor,
    config: InitializationConfig,
    *,
    fan_in: int | None = None,
    num_layers: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill `tensor` in place as `config` specifies and return it.

    Random values are drawn in float32 and then cast, so a bfloat16 tensor gets the
    rounded float32 values rather than values sampled at low precision.
    """
    function = _initializer_for(config)
    if tensor.dtype in (torch.float32, torch.float64) or not tensor.is_floating_point():
        function(config, tensor, fan_in=fan_in, num_layers=num_layers, generator=generator)
        return tensor
    values = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
    function(config, values, fan_in=fan_in, num_layers=num_layers, generator=generator)
    return tensor.copy_(values)


def _initializer_for(config: InitializationConfig) -> Initializer:
    for config_class in type(config).__mro__:
        function = _initializers.get(config_class)
        if function is not None:
            return function
    name = type(config).__name__
    raise LookupError(
        f"no initializer is registered for {name} (type {config.type_name!r}); "
        f"decorate a function with @register_initializer({name})"
    )


def _require(value: int | None, name: str, config: InitializationConfig) -> int:
    if value is None or value <= 0:
        raise ValueError(
            f"initialization type {config.type_name!r} needs a positive {name}, got {value}; "
            f"the layer that owns this weight does not provide one, so choose another type such as 'normal'"
        )
    return value


@register_initializer(FillInitializationConfig)
def _fill(config: FillInitializationConfig, tensor: torch.Tensor, **_: object) -> None:
    tensor.fill_(config.value)


@register_initializer(ZerosInitializationConfig)
def _zeros(config: ZerosInitializationConfig, tensor: torch.Tensor, **_: object) -> None:
    tensor.zero_()


@register_initializer(OnesInitializationConfig)
def _ones(config: OnesInitializationConfig, tensor: torch.Tensor, **_: object) -> None:
    tensor.fill_(1.0)


@register_initializer(NormalInitializationConfig)
def _normal(config: NormalInitializationConfig, tensor: torch.Tensor, *, generator: torch.Generator | None, **_: object) -> None:
    _truncated_normal(tensor, config.mean, config.std, config.low, config.high, generator)


@register_initializer(UniformInitializationConfig)
def _uniform(config: UniformInitializationConfig, tensor: torch.Tensor, *, generator: torch.Generator | None, **_: object) -> None:
    tensor.uniform_(config.low, config.high, generator=generator)


@register_initializer(FanInNormalInitializationConfig)
def _fan_in_normal(
    config: FanInNormalInitializationConfig,
    tensor: torch.Tensor,
    *,
    fan_in: int | None,
    generator: torch.Generator | None,
    **_: object,
) -> None:
    std = config.scale / math.sqrt(_require(fan_in, "fan_in", config))
    tensor.normal_(0.0, std, generator=generator)


@register_initializer(DepthScaledNormalInitializationConfig)
def _depth_scaled_normal(
    config: DepthScaledNormalInitializationConfig,
    tensor: torch.Tensor,
    *,
    num_layers: int | None,
    generator: torch.Generator | None,
    **_: object,
) -> None:
    std = config.std / math.sqrt(2 * _require(num_layers, "num_layers", config))
    tensor.normal_(config.mean, std, generator=generator)


@register_initializer(KaimingUniformInitializationConfig)
def _kaiming_uniform(
    config: KaimingUniformInitializationConfig,
    tensor: torch.Tensor,
    *,
    fan_in: int | None,
    generator: torch.Generator | None,
    **_: object,
) -> None:
    # Gain of a leaky ReLU with negative slope a, and bound = gain * sqrt(3 / fan_in).
    gain = math.sqrt(2.0 / (1 + config.a**2))
    bound = gain * math.sqrt(3.0 / _require(fan_in, "fan_in", config))
    tensor.uniform_(-bound, bound, generator=generator)


def _truncated_normal(
    tensor: torch.Tensor,
    mean: float,
    std: float,
    low: float | None,
    high: float | None,
    generator: torch.Generator | None,
) -> None:
    """Draw from N(mean, std^2) restricted to [low, high] by inverting the normal CDF."""
    if low is None and high is None:
        tensor.normal_(mean, std, generator=generator)
        return
    if std == 0:
        tensor.fill_(min(max(mean, low if low is not None else mean), high if high is not None else mean))
        return

    # Uniform on [2 * cdf(low) - 1, 2 * cdf(high) - 1], then mean + std * sqrt(2) * erfinv(u).
    lower = -1.0 if low is None else math.erf((low - mean) / (std * math.sqrt(2)))
    upper = 1.0 if high is None else math.erf((high - mean) / (std * math.sqrt(2)))
    tensor.uniform_(lower, upper, generator=generator)

    # NOTE: an open side would give erfinv(-1) = -inf for a draw of exactly -1, so draws are
    # kept inside (-1, 1). In float32 this caps an unbounded tail at about 5.3 std.
    limit = 1.0 - torch.finfo(tensor.dtype).eps
    tensor.clamp_(-limit, limit)
    tensor.erfinv_().mul_(std * math.sqrt(2)).add_(mean)
    tensor.clamp_(min=low, max=high)
