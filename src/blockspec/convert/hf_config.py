"""Hugging Face `config.json` -> blockspec model config (import).

Each supported `model_type` has a reader that turns the keys of its transformers config
class into the plain mapping `blockspec.load_config` validates. Keys left out of the file
take the defaults of that class (see `hf_defaults`). A key that import cannot represent,
with a value that changes the network, is an error that names it. Keys that describe only
how a checkpoint was made (`BOOKKEEPING_KEYS`) are ignored. Export lives in `hf_export`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError, ConfigIssue
from ..layers.families import ModelConfig
from ..loading import load_config
from .hf_defaults import BOOKKEEPING_KEYS, HF_DEFAULTS, KEY_ALIASES
from .hf_keys import (
    KEY_TYPES,
    POSITIVE_KEYS,
    ROPE_SETTING_TYPES,
    hf_keys_of_field,
    json_type_name,
    type_problem,
)

__all__ = ["SUPPORTED_MODEL_TYPES", "config_from_hf", "hf_config_to_dict", "read_hf_config"]

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(HF_DEFAULTS)
"""The Hugging Face `model_type` values that import and export support."""

ACTIVATIONS_FROM_HF: dict[str, str] = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "relu2": "squared_relu",
}
"""Hugging Face activation name (`hidden_act`, `hidden_activation`, `activation_function`) -> blockspec name."""


def read_hf_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return the `config.json` mapping of `source`: a mapping, a JSON file or a checkpoint directory.

    Raises `FileNotFoundError` when there is no file, and `ConfigError` naming the file
    when it is not valid JSON or does not contain a JSON object.
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = _config_path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Hugging Face config not found: {path} (expected a config.json file or a directory containing one)")
    try:
        with path.open(encoding="utf-8") as file:
            data = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(ConfigIssue(path="", message=f"not valid JSON: {error}; re-save or re-download the file"), source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(ConfigIssue(path="", message=f"expected a JSON object, got {json_type_name(data)}", value=data), source=str(path))
    return data


def _config_path(source: str | os.PathLike[str]) -> Path:
    path = Path(source)
    return path / "config.json" if path.is_dir() else path


def config_from_hf(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    ignore_keys: tuple[str, ...] | list[str] = (),
) -> ModelConfig:
    """Import a Hugging Face `config.json` (a mapping, a file or a checkpoint directory).

    Returns the validated blockspec `lm` config that builds the same network as the
    transformers class of the file's `model_type`. Raises `ConfigError` listing every key
    that blockspec cannot represent; `ignore_keys` names extra keys known not to change the
    network (they are ignored instead).
    """
    result, keys = _read(source, ignore_keys)
    try:
        return load_config(result)
    except ConfigError as error:
        raise ConfigError([keys.to_hf_issue(issue) for issue in error.issues], source=keys.source) from None


def hf_config_to_dict(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    ignore_keys: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Return the blockspec config mapping (not yet validated) of a Hugging Face `config.json`."""
    return _read(source, ignore_keys)[0]


def _read(source: str | os.PathLike[str] | Mapping[str, Any], ignore_keys: tuple[str, ...] | list[str]) -> tuple[dict[str, Any], HFKeys]:
    data = read_hf_config(source)
    file_name = None if isinstance(source, Mapping) else str(_config_path(source))
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in _READERS:
        raise ConfigError(
            ConfigIssue(
                path="model_type",
                message=_unsupported_message(model_type),
                value=model_type,
            ),
            source=file_name,
        )
    keys = HFKeys(model_type, data, ignore_keys=ignore_keys, file_name=file_name)
    result = _READERS[model_type](keys)
    keys.finish()
    return result, keys


_ENCODERS = {"bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta"}
_STATE_SPACE_MODELS = {"mamba", "mamba2", "rwkv"}


def _unsupported_message(model_type: Any) -> str:
    supported = ", ".join(SUPPORTED_MODEL_TYPES)
    if model_type in _ENCODERS:
        return f"{model_type!r} is an encoder-only model, and blockspec builds decoder-only language models; supported: {supported}"
    if model_type in _STATE_SPACE_MODELS:
        return f"{model_type!r} is a state-space model without attention, which blockspec cannot import yet; supported: {supported}"
    if model_type is None:
        return f"config.json has no model_type; supported: {supported}"
    return f"unsupported Hugging Face model_type; supported: {supported}"


class HFKeys:
    """The keys of one `config.json` with its class defaults, recording which ones import used.

    Readers take values with `get` and record problems with `fail`. `finish` then raises
    one `ConfigError` listing those problems and every key of the file that no reader used
    and that is not bookkeeping.
    """

    def __init__(
        self,
        model_type: str,
        data: Mapping[str, Any],
        *,
        ignore_keys: tuple[str, ...] | list[str] = (),
        file_name: str | None = None,
    ):
        self.model_type = model_type
        aliases = KEY_ALIASES.get(model_type, {})
        self.given = {aliases.get(key, key): value for key, value in data.items()}
        # The spelling the file used for each key, so messages name the key the user wrote.
        self.written = {aliases.get(key, key): key for key in data}
        self.values = {**HF_DEFAULTS[model_type], **self.given}
        self.ignored = set(ignore_keys)
        self.used: set[str] = set()
        self.invalid: set[str] = set()
        self.issues: list[ConfigIssue] = []
        where = f"model_type {model_type}"
        self.source = f"{file_name} ({where})" if file_name else f"Hugging Face config ({where})"

    def get(self, key: str) -> Any:
        """Return the value of `key` (the class default when the file leaves it out).

        A value of the wrong JSON type (see `KEY_TYPES`) is recorded as an issue and
        replaced by the class default, so the reader can go on and report other keys.
        """
        self.used.add(key)
        value = self.values.get(key)
        expected = KEY_TYPES.get(key)
        if key in self.given and expected is not None:
            problem = type_problem(value, *expected)
            if problem is None and key in POSITIVE_KEYS and value is not None and value <= 0:
                problem = "must be a positive integer"
            if problem is not None:
                if key not in self.invalid:
                    self.fail(key, problem, value)
                self.invalid.add(key)
                return HF_DEFAULTS[self.model_type].get(key)
        return value

    def is_valid(self, *keys: str) -> bool:
        """Return whether none of `keys` had a value of the wrong type or range (see `get`)."""
        return not self.invalid.intersection(keys)

    def is_given(self, key: str) -> bool:
        """Return whether the file itself sets `key` (to any value, null included)."""
        return key in self.given

    def fail(self, key: str, message: str, value: Any) -> None:
        """Record that `key` has a value import cannot represent."""
        self.issues.append(ConfigIssue(path=self.spelling(key), message=message, value=value))

    def spelling(self, key: str) -> str:
        """Return `key` (dotted for nested keys) as the file spells its first part."""
        head, dot, rest = key.partition(".")
        return self.written.get(head, head) + dot + rest

    def to_hf_issue(self, issue: ConfigIssue) -> ConfigIssue:
        """Return a validation issue of the imported config, located at the HF keys that set the field."""
        hf_keys = [key for key in hf_keys_of_field(issue.path, self.model_type) if key in self.used]
        if not hf_keys:
            return issue
        located = " / ".join(self.spelling(key) for key in hf_keys)
        message = f"{issue.message} (blockspec field {issue.path})"
        return ConfigIssue(path=located, message=message, value=issue.value)

    def require(self, key: str, allowed: Callable[[Any], bool], message: str) -> Any:
        """Return the value of `key`, recording `message` as an issue when `allowed(value)` is false."""
        value = self.get(key)
        if not allowed(value):
            self.fail(key, message, value)
        return value

    def finish(self) -> None:
        """Raise a ConfigError for every recorded issue and every unknown key of the file."""
        for key, value in self.given.items():
            if key in self.used or key in BOOKKEEPING_KEYS or key in self.ignored:
                continue
            neutral = _NEUTRAL_EXTRA_KEYS.get(key)
            if neutral is not None and neutral(value):
                continue
            if key in HF_DEFAULTS[self.model_type]:
                continue
            self.issues.append(
                ConfigIssue(
                    path=key,
                    message=f"unknown key for model_type {self.model_type!r}, so blockspec cannot tell what it changes; "
                    f"pass ignore_keys=[{key!r}] if it does not change the network",
                    value=value,
                )
            )
        if self.issues:
            raise ConfigError(self.issues, source=self.source)


_NEUTRAL_EXTRA_KEYS: dict[str, Callable[[Any], bool]] = {
    # Written by older transformers (Qwen2.5) and by nanotron (SmolLM2); the values accepted
    # here are the ones that leave the network as transformers 5 builds it.
    "use_mrope": lambda value: value is False,
    "rope_interleaved": lambda value: value is False,
    "pretraining_tp": lambda value: True,
    # GPT-2's old context-size key; transformers 5 reads n_positions only.
    "n_ctx": lambda value: True,
}


# ---------------------------------------------------------------------- shared parts


def _activation(keys: HFKeys, key: str) -> str:
    value = keys.get(key)
    activation = ACTIVATIONS_FROM_HF.get(value)
    if activation is None:
        keys.fail(key, f"unsupported activation; blockspec reads {', '.join(sorted(ACTIVATIONS_FROM_HF))}", value)
        return "silu"
    return activation


def _rms_norm(keys: HFKeys, *, zero_centered: bool = False) -> dict[str, Any]:
    norm: dict[str, Any] = {"type": "rms_norm", "epsilon": float(keys.get("rms_norm_eps"))}
    if zero_centered:
        norm["zero_centered"] = True
    return norm


def _head_size(keys: HFKeys, hidden_size: int, heads: int) -> int:
    head_dim = keys.get("head_dim")
    if head_dim is not None:
        return head_dim
    if hidden_size % heads != 0 and keys.is_valid("hidden_size", "num_attention_heads"):
        keys.fail("num_attention_heads", f"does not divide hidden_size={hidden_size} and head_dim is not set", heads)
        return max(1, hidden_size // heads)
    return hidden_size // heads


def _rotary(keys: HFKeys, *, allow_partial: bool = False) -> dict[str, Any]:
    """Return the blockspec rotary config from rope_parameters, or legacy rope_scaling + rope_theta.

    `allow_partial` is true for the model types whose transformers attention rotates only
    part of each head (Phi-3); elsewhere a partial_rotary_factor below 1 is rejected.
    """
    parameters = keys.get("rope_parameters") if keys.is_given("rope_parameters") else None
    scaling = keys.get("rope_scaling") if keys.is_given("rope_scaling") else None
    legacy_theta = keys.get("rope_theta")
    legacy_fraction = keys.get("partial_rotary_factor") if keys.is_given("partial_rotary_factor") else None
    # As in transformers 5, a non-empty legacy rope_scaling takes precedence over rope_parameters.
    source_key = "rope_scaling" if scaling else "rope_parameters"
    settings = dict(scaling or parameters or {})
    if settings and not isinstance(next(iter(settings.values())), (int, float, str, bool, type(None), list)):
        keys.fail(source_key, "per-layer-type rotary settings are not supported; give one set of rope parameters", settings)
        return {"type": "none"}

    for key in list(settings):
        expected = ROPE_SETTING_TYPES.get(key)
        problem = type_problem(settings[key], *expected) if expected is not None else None
        if problem is not None:
            keys.fail(f"{source_key}.{key}", problem, settings[key])
            settings[key] = _ROPE_FALLBACKS[expected[0]]

    theta = settings.pop("rope_theta", None)
    if theta is None:
        theta = legacy_theta
    rope_type = settings.pop("rope_type", None)
    legacy_type = settings.pop("type", None)
    if rope_type is not None and legacy_type is not None and rope_type != legacy_type:
        keys.fail(f"{source_key}.type", f"disagrees with rope_type={rope_type!r}; keep one of them", legacy_type)
    # Name the spelling the file used, so an error points at a key the user wrote.
    type_key = f"{source_key}.rope_type" if rope_type is not None else f"{source_key}.type"
    rope_type = rope_type or legacy_type or "default"
    fraction = settings.pop("partial_rotary_factor", legacy_fraction)

    rotary: dict[str, Any] = {"type": rope_type, "theta": float(theta)}
    if fraction is not None and float(fraction) != 1.0:
        if not allow_partial:
            keys.fail(f"{source_key}.partial_rotary_factor", f"transformers' {keys.model_type} rotates whole heads, so only 1.0 is supported", fraction)
        rotary["fraction"] = float(fraction)
    reader = _ROPE_READERS.get(rope_type)
    if reader is None:
        keys.fail(type_key, f"unsupported rotary scaling; blockspec reads {', '.join(_ROPE_READERS)}", rope_type)
        return {"type": "default", "theta": float(theta)}
    reader(keys, settings, rotary, source_key)
    for key, value in settings.items():
        keys.fail(f"{source_key}.{key}", f"not supported for rope_type {rope_type!r}", value)
    return rotary


# Values that stand in for a rope setting of the wrong JSON type, so the readers can go on
# after the problem is recorded.
_ROPE_FALLBACKS: dict[str, Any] = {"string": "default", "number": 1.0, "integer": 1, "boolean": False}


def _read_default_rope(keys: HFKeys, settings: dict[str, Any], rotary: dict[str, Any], source_key: str) -> None:
    # `factor` is harmless here; transformers' default rope ignores it.
    settings.pop("factor", None)


def _read_linear_rope(keys: HFKeys, settings: dict[str, Any], rotary: dict[str, Any], source_key: str) -> None:
    rotary["factor"] = float(_required(keys, settings, "factor", source_key))


def _read_llama3_rope(keys: HFKeys, settings: dict[str, Any], rotary: dict[str, Any], source_key: str) -> None:
    rotary["factor"] = float(_required(keys, settings, "factor", source_key))
    rotary["low_frequency_factor"] = float(_required(keys, settings, "low_freq_factor", source_key))
    rotary["high_frequency_factor"] = float(_required(keys, settings, "high_freq_factor", source_key))
    original = settings.pop("original_max_position_embeddings", None)
    rotary["original_context_length"] = int(original if original is not None else keys.get("max_position_embeddings"))


def _read_yarn_rope(keys: HFKeys, settings: dict[str, Any], rotary: dict[str, Any], source_key: str) -> None:
    original = settings.pop("original_max_position_embeddings", None)
    if original is None:
        original = keys.get("max_position_embeddings")
    factor = settings.pop("factor", None)
    if factor is None:
        factor = keys.get("max_position_embeddings") / original
    rotary["factor"] = float(factor)
    rotary["original_context_length"] = int(original)
    for hf_key, key in [("beta_fast", "beta_fast"), ("beta_slow", "beta_slow"), ("attention_factor", "attention_factor"), ("mscale", "mscale"), ("mscale_all_dim", "mscale_all_dim")]:
        value = settings.pop(hf_key, None)
        # transformers treats a 0 or missing beta as its default (`or 32`, `or 1`).
        if value:
            rotary[key] = float(value)
    truncate = settings.pop("truncate", None)
    if truncate is not None:
        rotary["truncate"] = bool(truncate)


def _required(keys: HFKeys, settings: dict[str, Any], key: str, source_key: str) -> Any:
    value = settings.pop(key, None)
    if value is None:
        keys.fail(f"{source_key}.{key}", "missing, and required by this rope_type", None)
        return 1
    return value


_ROPE_READERS = {
    "default": _read_default_rope,
    "linear": _read_linear_rope,
    "llama3": _read_llama3_rope,
    "yarn": _read_yarn_rope,
}


def _attention(keys: HFKeys, *, hidden_size: int, biases: dict[str, bool], allow_partial_rotary: bool = False) -> dict[str, Any]:
    heads = keys.get("num_attention_heads")
    kv_heads = keys.get("num_key_value_heads") or heads
    issues_before = len(keys.issues)
    head_size = _head_size(keys, hidden_size, heads)
    head_size_valid = len(keys.issues) == issues_before and keys.is_valid("head_dim", "hidden_size", "num_attention_heads")
    rotary = _rotary(keys, allow_partial=allow_partial_rotary)
    if head_size_valid and rotary.get("fraction", 1.0) == 1.0 and rotary["type"] != "none" and head_size % 2 != 0:
        # Rotary embeddings rotate pairs of dimensions, and this model type rotates whole heads.
        key = "head_dim" if keys.is_given("head_dim") and keys.get("head_dim") is not None else "num_attention_heads"
        keys.fail(key, f"head size {head_size} is odd; rotary embeddings rotate pairs of dimensions, so the head size must be even", keys.get(key))
    attention: dict[str, Any] = {
        "type": "attention",
        "heads": heads,
        "head_groups": kv_heads,
        "head_size": head_size,
        "rotary": rotary,
    }
    for name in ("query", "key", "value", "output"):
        attention[name] = {"bias": biases[name]}
    dropout = keys.get("attention_dropout")
    if dropout:
        attention["dropout"] = float(dropout)
    return attention


def _mlp(intermediate_size: int, activation: str, *, bias: bool = False, gated: bool = True) -> dict[str, Any]:
    mlp: dict[str, Any] = {"type": "mlp", "intermediate_size": intermediate_size, "gated": gated, "activation": activation}
    if bias:
        mlp["add_linear_biases"] = True
    return mlp


def _language_model(
    keys: HFKeys,
    layers: list[tuple[str, dict[str, Any]]],
    *,
    hidden_size: int,
    final_norm: dict[str, Any],
    embeddings: dict[str, Any] | None = None,
    head: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "type": "lm",
        "hidden_size": hidden_size,
        "tied_embeddings": bool(keys.get("tie_word_embeddings")),
        "embeddings": {"type": "lm_embeddings", "vocab_size": keys.get("vocab_size"), **(embeddings or {})},
        "transformer": block_sequence(layers),
        "head": {"type": "lm_head", "normalization": final_norm, **(head or {})},
    }


def _window_per_layer(keys: HFKeys, layer_types: list[str] | None, window: int | None, num_layers: int) -> list[int | None]:
    """Return the sliding window of every layer, from `layer_types` and the shared window size."""
    if layer_types is None:
        return [None] * num_layers
    if len(layer_types) != num_layers:
        keys.fail("layer_types", f"has {len(layer_types)} entries but num_hidden_layers is {num_layers}", layer_types)
        return [None] * num_layers
    windows: list[int | None] = []
    for index, layer_type in enumerate(layer_types):
        if layer_type == "full_attention":
            windows.append(None)
        elif layer_type == "sliding_attention":
            windows.append(window or None)
        else:
            keys.fail(f"layer_types[{index}]", "unsupported layer type; blockspec reads full_attention and sliding_attention", layer_type)
            windows.append(None)
    return windows


# ---------------------------------------------------------------------- per model type


def _read_llama_like(
    keys: HFKeys,
    *,
    qkv_bias: bool | None = None,
    query_key_norm: bool = False,
    windows: list[int | None] | None = None,
    allow_partial_rotary: bool = False,
) -> dict[str, Any]:
    """Read Llama, Mistral, Qwen2, Qwen3 and Phi-3: pre-norm RMSNorm blocks, rotary attention, SwiGLU mlp."""
    hidden_size = keys.get("hidden_size")
    num_layers = keys.get("num_hidden_layers")
    if qkv_bias is None:
        attention_bias = bool(keys.get("attention_bias")) if "attention_bias" in HF_DEFAULTS[keys.model_type] else False
        biases = dict.fromkeys(("query", "key", "value", "output"), attention_bias)
    else:
        biases = {"query": qkv_bias, "key": qkv_bias, "value": qkv_bias, "output": False}
    attention = _attention(keys, hidden_size=hidden_size, biases=biases, allow_partial_rotary=allow_partial_rotary)
    if query_key_norm:
        attention["query_norm"] = _rms_norm(keys)
        attention["key_norm"] = _rms_norm(keys)
    mlp_bias = bool(keys.get("mlp_bias")) if "mlp_bias" in HF_DEFAULTS[keys.model_type] else False
    mlp = _mlp(keys.get("intermediate_size"), _activation(keys, "hidden_act"), bias=mlp_bias)
    block = {"type": "transformer", "mixer": attention, "mlp": mlp, "normalization": _rms_norm(keys)}
    layers = [_with_window("full", block, window) for window in (windows or [None] * num_layers)]
    return _language_model(keys, layers, hidden_size=hidden_size, final_norm=_rms_norm(keys))


def _with_window(name: str, block: dict[str, Any], window: int | None) -> tuple[str, dict[str, Any]]:
    if window is None:
        return name, block
    mixer = {**block["mixer"], "window_size": window}
    return "sliding" if name == "full" else f"{name}_sliding", {**block, "mixer": mixer}


def _read_llama(keys: HFKeys) -> dict[str, Any]:
    keys.get("pretraining_tp")  # transformers 5 ignores it: the network is the same for any value
    return _read_llama_like(keys)


def _read_mistral(keys: HFKeys) -> dict[str, Any]:
    window = keys.get("sliding_window")
    return _read_llama_like(keys, windows=[window] * keys.get("num_hidden_layers"))


def _qwen_windows(keys: HFKeys) -> list[int | None]:
    """Windows of Qwen2/Qwen3: `sliding_window` on the layers from `max_window_layers` on when enabled."""
    num_layers = keys.get("num_hidden_layers")
    window = keys.get("sliding_window") if keys.get("use_sliding_window") else None
    max_window_layers = keys.get("max_window_layers")
    layer_types = keys.get("layer_types")
    if layer_types is None:
        layer_types = ["sliding_attention" if window is not None and index >= max_window_layers else "full_attention" for index in range(num_layers)]
    return _window_per_layer(keys, layer_types, window, num_layers)


def _read_qwen2(keys: HFKeys) -> dict[str, Any]:
    return _read_llama_like(keys, qkv_bias=True, windows=_qwen_windows(keys))


def _read_qwen3(keys: HFKeys) -> dict[str, Any]:
    return _read_llama_like(keys, query_key_norm=True, windows=_qwen_windows(keys))


def _read_mixtral(keys: HFKeys) -> dict[str, Any]:
    keys.require("router_jitter_noise", lambda value: not value, "router jitter noise has no blockspec field; set it to 0.0")
    config = _read_llama_like(keys, windows=[keys.get("sliding_window")] * keys.get("num_hidden_layers"))
    moe = {
        "type": "moe",
        "experts": keys.get("num_local_experts"),
        "experts_per_token": keys.get("num_experts_per_tok"),
        "intermediate_size": keys.get("intermediate_size"),
        "activation": _activation(keys, "hidden_act"),
        "normalize_top_k": True,
        "aux_loss_coefficient": float(keys.get("router_aux_loss_coef")),
    }
    return _update_blocks(config, mlp=moe)


def _update_blocks(config: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Set `fields` in every block of an imported config (the `block`, or each of `blocks`)."""
    sequence = config["transformer"]
    if "block" in sequence:
        sequence["block"] = {**sequence["block"], **fields}
    else:
        sequence["blocks"] = {name: {**block, **fields} for name, block in sequence["blocks"].items()}
    return config


def _read_qwen2_moe(keys: HFKeys) -> dict[str, Any]:
    hidden_size = keys.get("hidden_size")
    num_layers = keys.get("num_hidden_layers")
    activation = _activation(keys, "hidden_act")
    qkv_bias = bool(keys.get("qkv_bias"))
    attention = _attention(keys, hidden_size=hidden_size, biases={"query": qkv_bias, "key": qkv_bias, "value": qkv_bias, "output": False})

    use_window = bool(keys.get("use_sliding_window"))
    window = keys.get("sliding_window") if use_window else None
    max_window_layers = keys.get("max_window_layers")
    layer_types = keys.get("layer_types")
    if layer_types is None:
        # transformers 5 windows every other layer (0, 2, ...) below max_window_layers.
        layer_types = ["sliding_attention" if (index + 1) % 2 and index < max_window_layers and use_window else "full_attention" for index in range(num_layers)]
    windows = _window_per_layer(keys, layer_types, window, num_layers)

    experts = keys.get("num_experts")
    sparse_step = keys.get("decoder_sparse_step")
    mlp_only_layers = keys.get("mlp_only_layers") or []
    for index, layer in enumerate(mlp_only_layers):
        problem = type_problem(layer, "integer", False)
        if problem is not None:
            keys.fail(f"mlp_only_layers[{index}]", f"{problem}; list layer indices", layer)
    shared_size = keys.get("shared_expert_intermediate_size")
    moe: dict[str, Any] = {
        "type": "moe",
        "experts": experts,
        "experts_per_token": keys.get("num_experts_per_tok"),
        "intermediate_size": keys.get("moe_intermediate_size"),
        "activation": activation,
        "normalize_top_k": bool(keys.get("norm_topk_prob")),
        "aux_loss_coefficient": float(keys.get("router_aux_loss_coef")),
    }
    if shared_size:
        moe["shared_expert_intermediate_size"] = shared_size
        moe["shared_expert_gate"] = True
    dense = _mlp(keys.get("intermediate_size"), activation)

    layers = []
    for index in range(num_layers):
        is_sparse = index not in mlp_only_layers and experts > 0 and (index + 1) % sparse_step == 0
        block = {"type": "transformer", "mixer": attention, "mlp": moe if is_sparse else dense, "normalization": _rms_norm(keys)}
        layers.append(_with_window("moe" if is_sparse else "dense", block, windows[index]))
    return _language_model(keys, layers, hidden_size=hidden_size, final_norm=_rms_norm(keys))


def _read_gemma2(keys: HFKeys) -> dict[str, Any]:
    hidden_size = keys.get("hidden_size")
    num_layers = keys.get("num_hidden_layers")
    keys.require("use_bidirectional_attention", lambda value: not value, "bidirectional Gemma 2 is not supported; set it to null or false")
    attention_bias = bool(keys.get("attention_bias"))
    attention = _attention(keys, hidden_size=hidden_size, biases=dict.fromkeys(("query", "key", "value", "output"), attention_bias))
    attention["softmax_scale"] = keys.get("query_pre_attn_scalar") ** -0.5
    soft_cap = keys.get("attn_logit_softcapping")
    if soft_cap is not None:
        attention["soft_cap"] = float(soft_cap)

    norm = _rms_norm(keys, zero_centered=True)
    block = {
        "type": "transformer",
        "mixer": attention,
        "mlp": _mlp(keys.get("intermediate_size"), _activation(keys, "hidden_activation")),
        "normalization": norm,
        "post_mixer_normalization": norm,
        "post_mlp_normalization": norm,
    }

    layer_types = keys.get("layer_types")
    if layer_types is None:
        layer_types = ["sliding_attention" if (index + 1) % 2 else "full_attention" for index in range(num_layers)]
    windows = _window_per_layer(keys, layer_types, keys.get("sliding_window"), num_layers)
    layers = [("global", block) if window is None else ("local", {**block, "mixer": {**attention, "window_size": window}}) for window in windows]

    head: dict[str, Any] = {}
    final_cap = keys.get("final_logit_softcapping")
    if final_cap is not None:
        head["logit_soft_cap"] = float(final_cap)
    # Gemma multiplies the embeddings by sqrt(hidden_size), rounded to the activation dtype.
    embeddings = {"scale": math.sqrt(hidden_size)}
    return _language_model(keys, layers, hidden_size=hidden_size, final_norm=norm, embeddings=embeddings, head=head)


def _read_gpt2(keys: HFKeys) -> dict[str, Any]:
    hidden_size = keys.get("n_embd")
    heads = keys.get("n_head")
    keys.require("add_cross_attention", lambda value: not value, "cross-attention is not supported; set it to false")
    keys.require("scale_attn_by_inverse_layer_idx", lambda value: not value, "per-layer attention scaling is not supported; set it to false")
    keys.require("reorder_and_upcast_attn", lambda value: not value, "the upcast attention variant is not supported; set it to false")
    for key in ("summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout"):
        keys.get(key)  # only GPT2DoubleHeadsModel's classification head reads these
    if hidden_size % heads != 0 and keys.is_valid("n_embd", "n_head"):
        keys.fail("n_head", f"does not divide n_embd={hidden_size}", heads)

    attention: dict[str, Any] = {
        "type": "attention",
        "heads": heads,
        "head_groups": heads,
        "head_size": hidden_size // heads,
        "rotary": {"type": "none"},
        "add_linear_biases": True,
    }
    if not keys.get("scale_attn_weights"):
        attention["softmax_scale"] = 1.0
    attention_dropout = keys.get("attn_pdrop")
    if attention_dropout:
        attention["dropout"] = float(attention_dropout)

    norm = {"type": "layer_norm", "epsilon": float(keys.get("layer_norm_epsilon"))}
    inner = keys.get("n_inner") or 4 * hidden_size
    block: dict[str, Any] = {
        "type": "transformer",
        "mixer": attention,
        "mlp": _mlp(inner, _activation(keys, "activation_function"), bias=True, gated=False),
        "normalization": norm,
    }
    residual_dropout = keys.get("resid_pdrop")
    if residual_dropout:
        block["dropout"] = float(residual_dropout)

    embeddings: dict[str, Any] = {"position_embeddings": keys.get("n_positions")}
    embedding_dropout = keys.get("embd_pdrop")
    if embedding_dropout:
        embeddings["dropout"] = float(embedding_dropout)
    layers = [("block", block)] * keys.get("n_layer")
    return _language_model(keys, layers, hidden_size=hidden_size, final_norm=norm, embeddings=embeddings)


def _read_phi3(keys: HFKeys) -> dict[str, Any]:
    keys.get("original_max_position_embeddings")  # read only by longrope scaling, which import rejects
    keys.get("embd_pdrop")  # transformers 5 Phi-3 defines but never applies this dropout
    windows = [keys.get("sliding_window")] * keys.get("num_hidden_layers")
    config = _read_llama_like(keys, windows=windows, allow_partial_rotary=True)
    residual_dropout = keys.get("resid_pdrop")
    if residual_dropout:
        config = _update_blocks(config, dropout=float(residual_dropout))
    return config


def _read_olmo2(keys: HFKeys) -> dict[str, Any]:
    """Read OLMo 2: no pre-norms, RMSNorm after each branch, RMSNorm over the whole query and key projections."""
    hidden_size = keys.get("hidden_size")
    attention_bias = bool(keys.get("attention_bias"))
    attention = _attention(keys, hidden_size=hidden_size, biases=dict.fromkeys(("query", "key", "value", "output"), attention_bias))
    attention.update(query_norm=_rms_norm(keys), key_norm=_rms_norm(keys), qk_norm_per_head=False)

    norm = _rms_norm(keys)
    block = {
        "type": "transformer",
        "mixer": attention,
        "mlp": _mlp(keys.get("intermediate_size"), _activation(keys, "hidden_act")),
        "normalization": {"type": "none"},
        "post_mixer_normalization": norm,
        "post_mlp_normalization": norm,
    }
    layers = [("block", block)] * keys.get("num_hidden_layers")
    return _language_model(keys, layers, hidden_size=hidden_size, final_norm=norm)


_READERS: dict[str, Callable[[HFKeys], dict[str, Any]]] = {
    "llama": _read_llama,
    "mistral": _read_mistral,
    "qwen2": _read_qwen2,
    "qwen3": _read_qwen3,
    "mixtral": _read_mixtral,
    "qwen2_moe": _read_qwen2_moe,
    "gemma2": _read_gemma2,
    "gpt2": _read_gpt2,
    "phi3": _read_phi3,
    "olmo2": _read_olmo2,
}


# ---------------------------------------------------------------------- per-layer blocks -> repeat sequence


def block_sequence(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Return the shortest `repeat` sequence config whose layer i is `layers[i][1]`.

    The result is one block when all layers agree. It is named `blocks` with a `pattern`
    when the layers repeat with a period that divides the layer count. Otherwise it is the
    most common block with `overrides` for the other layers. `layers[i][0]` names the
    block of layer i.
    """
    num_layers = len(layers)
    blocks = [block for _, block in layers]
    if all(block == blocks[0] for block in blocks):
        return {"type": "repeat", "num_layers": num_layers, "block": blocks[0]}

    for period in range(2, num_layers):
        if num_layers % period == 0 and all(blocks[index] == blocks[index % period] for index in range(num_layers)):
            named = _name_blocks(layers[:period])
            if named is not None:
                names, definitions = named
                return {"type": "repeat", "num_layers": num_layers, "blocks": definitions, "pattern": names}

    keyed = [json.dumps(block, sort_keys=True) for block in blocks]
    base_key = Counter(keyed).most_common(1)[0][0]
    base = blocks[keyed.index(base_key)]
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keyed):
        if key != base_key:
            groups.setdefault(key, []).append(index)
    overrides = []
    for key, indices in groups.items():
        changes = _dotted_changes(base, blocks[indices[0]])
        overrides.append({"layers": _layer_selection(indices, num_layers), "set": changes})
    return {"type": "repeat", "num_layers": num_layers, "block": base, "overrides": overrides}


def _name_blocks(layers: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], dict[str, dict[str, Any]]] | None:
    definitions: dict[str, dict[str, Any]] = {}
    names = []
    for name, block in layers:
        if name in definitions and definitions[name] != block:
            return None
        definitions[name] = block
        names.append(name)
    return names, definitions


def _dotted_changes(base: dict[str, Any], other: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return dotted path -> value for every field where `other` differs from `base`.

    A node whose `type` differs is replaced as a whole, because its fields differ by type.
    """
    changes: dict[str, Any] = {}
    for key in sorted(set(base) | set(other)):
        path = f"{prefix}{key}"
        old, new = base.get(key), other.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and old.get("type") == new.get("type"):
            changes.update(_dotted_changes(old, new, f"{path}."))
        else:
            changes[path] = new
    return changes


def _layer_selection(indices: list[int], num_layers: int) -> int | list[int] | str:
    if len(indices) == 1:
        return indices[0]
    start, stop = indices[0], indices[-1] + 1
    if indices == list(range(start, stop)):
        return f"{start}:" if stop == num_layers else f"{start}:{stop}"
    return indices
