"""Counting the parameters of a part from its config alone, without building it."""

from __future__ import annotations

import inspect
from typing import Any

from ..config import Config
from .families import PeftConfig


def count_parameters(config: Config, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
    """Return the parameter count of the module that `config` builds in a stream of width `hidden_size`.

    Calls the config's `num_parameters(hidden_size=...)`, passing `peft` (the model's peft
    config, for LoRA adapters) when the method accepts a `peft` keyword.
    """
    method = getattr(config, "num_parameters", None)
    if method is None:
        raise TypeError(
            f"cannot count the parameters of {type(config).__name__} (type {config.type_name!r}); "
            "give the config class a method num_parameters(self, *, hidden_size, peft=None) -> int"
        )
    if _accepts_peft(method):
        return method(hidden_size=hidden_size, peft=peft)
    return method(hidden_size=hidden_size)


def _accepts_peft(method: Any) -> bool:
    """Check whether `method` takes a `peft` keyword. Counters written before that keyword existed take only hidden_size."""
    parameters = inspect.signature(method).parameters.values()
    return any(parameter.name == "peft" or parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)
