"""blockspec model config -> Hugging Face `config.json` (export).

A writer per `model_type` fills the keys of its transformers config class. Export then
imports its own output again and compares the two configs field by field, leaving out
training-only settings such as initialization, lr scale and dropout. A config that one
`config.json` cannot express therefore raises an error naming the fields instead of
exporting a different network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError, ConfigIssue
from ..layers.families import ModelConfig
from ..loading import load_config
from .hf_config import SUPPORTED_MODEL_TYPES, hf_config_to_dict

__all__ = ["config_to_hf", "infer_model_type", "warn_about_differences"]

logger = logging.getLogger(__name__)

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen2_moe": "Qwen2MoeForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "phi3": "Phi3ForCausalLM",
    "olmo2": "Olmo2ForCausalLM",
}

_ACTIVATIONS_TO_HF = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "squared_relu": "relu2"}

TRAINING_ONLY_FIELDS = frozenset(
    {
        "weight_initialization",
        "bias_initialization",
        "initialization",
        "lr_scale",
        "weight_decay",
        "apply_peft",
        "peft",
        "init_std",
        "dropout",
        "z_loss_coefficient",
        "full_precision_residual",
    }
)
"""Config fields with no `config.json` counterpart that do not change the trained network's outputs."""


def config_to_hf(
    config: ModelConfig,
    *,
    model_type: str | None = None,
    max_position_embeddings: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the Hugging Face `config.json` mapping of a blockspec `lm` config.

    `model_type` defaults to the one inferred from the config's structure (see
    `infer_model_type`). `max_position_embeddings` is written for rotary models, which
    have no such field in blockspec; None means the learned position table's size, else
    the rotary `original_context_length * factor` when scaled, else the transformers
    default of the model type. `extra` keys (token ids, ...) are added as given.

    Raises `ConfigError` naming every field that the model type cannot express.
    """
    model_type = model_type or infer_model_type(config)
    if model_type not in _WRITERS:
        raise ConfigError(ConfigIssue(path="model_type", message=f"unsupported; blockspec exports {', '.join(SUPPORTED_MODEL_TYPES)}", value=model_type))

    layers = [layer.resolved for layer in config.transformer.layer_configs()]
    resolved = config.resolved
    result = {"architectures": [ARCHITECTURES[model_type]], "model_type": model_type}
    result.update(_WRITERS[model_type](resolved, layers))
    if "max_position_embeddings" not in result:
        result["max_position_embeddings"] = max_position_embeddings or _context_length(layers[0].mixer.rotary, model_type)
    elif max_position_embeddings is not None and max_position_embeddings != result["max_position_embeddings"]:
        raise ValueError(
            f"max_position_embeddings={max_position_embeddings} disagrees with the learned position table of "
            f"{result['max_position_embeddings']} positions; leave it unset"
        )

    if model_type == "gpt2":
        result.pop("max_position_embeddings")  # GPT-2 spells it n_positions
    result.update(_token_ids_outside_vocabulary(model_type, config.embeddings.vocab_size))
    result.update(extra or {})
    _check_round_trip(config, result, model_type)
    return result


def _token_ids_outside_vocabulary(model_type: str, vocab_size: int) -> dict[str, None]:
    """Return None for each token id whose class default is not a valid id for `vocab_size`.

    Some classes use the default as the embedding's padding index (Phi-3's pad id 32000),
    which fails for a smaller vocabulary. Pass real token ids with `extra`.
    """
    from .hf_defaults import HF_DEFAULTS

    defaults = HF_DEFAULTS[model_type]
    keys = ("bos_token_id", "eos_token_id", "pad_token_id")
    return {key: None for key in keys if isinstance(defaults.get(key), int) and defaults[key] >= vocab_size}


def infer_model_type(config: ModelConfig) -> str:
    """Return the Hugging Face model_type whose network has the structure of `config`.

    The rules check the distinguishing parts in this order. Learned positions mean gpt2
    and post norms gemma2. Experts mean qwen2_moe when there is a shared expert, a dense
    layer or a query bias, else mixtral. Query/key norms mean qwen3. Query/key/value
    biases without an output bias, or windows on some layers only, mean qwen2. A partial
    rotary embedding means phi3, one window on every layer mistral, and anything else
    llama. A no-pre-norm block with post norms means olmo2 instead of gemma2.
    """
    layers = [layer.resolved for layer in config.transformer.layer_configs()]
    first = layers[0]
    if config.embeddings.position_embeddings:
        return "gpt2"
    if first.post_mixer_normalization is not None or first.post_mlp_normalization is not None:
        return "olmo2" if first.normalization.type_name == "none" else "gemma2"
    mlp_types = {layer.mlp.type_name for layer in layers}
    if "moe" in mlp_types:
        moe = next(layer.mlp for layer in layers if layer.mlp.type_name == "moe")
        if mlp_types != {"moe"} or moe.shared_expert_intermediate_size or first.mixer.query.bias:
            return "qwen2_moe"
        return "mixtral"
    if first.mixer.query_norm is not None:
        return "qwen3"
    if getattr(first.mixer.rotary, "fraction", 1.0) != 1.0:
        return "phi3"
    windows = [layer.mixer.window_size for layer in layers]
    if first.mixer.query.bias and not first.mixer.output.bias:
        return "qwen2"
    if len(set(windows)) > 1:
        return "qwen2"
    if windows[0] is not None:
        return "mistral"
    return "llama"


# ---------------------------------------------------------------------- shared parts


def _rope_parameters(rotary: Any) -> dict[str, Any] | None:
    """Return transformers 5 `rope_parameters` for a rotary config (None for `none`)."""
    if rotary.type_name == "none":
        return None
    parameters: dict[str, Any] = {"rope_type": rotary.type_name, "rope_theta": rotary.theta}
    if rotary.fraction != 1.0:
        parameters["partial_rotary_factor"] = rotary.fraction
    if rotary.type_name == "linear":
        parameters["factor"] = rotary.factor
    elif rotary.type_name == "llama3":
        parameters.update(
            factor=rotary.factor,
            low_freq_factor=rotary.low_frequency_factor,
            high_freq_factor=rotary.high_frequency_factor,
            original_max_position_embeddings=rotary.original_context_length,
        )
    elif rotary.type_name == "yarn":
        parameters.update(
            factor=rotary.factor,
            original_max_position_embeddings=rotary.original_context_length,
            beta_fast=rotary.beta_fast,
            beta_slow=rotary.beta_slow,
            truncate=rotary.truncate,
        )
        for key in ("attention_factor", "mscale", "mscale_all_dim"):
            if getattr(rotary, key) is not None:
                parameters[key] = getattr(rotary, key)
    return parameters


def _context_length(rotary: Any, model_type: str) -> int:
    if rotary.type_name in ("llama3", "yarn"):
        return int(rotary.original_context_length * rotary.factor)
    from .hf_defaults import HF_DEFAULTS

    return HF_DEFAULTS[model_type].get("max_position_embeddings") or HF_DEFAULTS[model_type]["n_positions"]


def _activation(name: str) -> str:
    return _ACTIVATIONS_TO_HF[name]


def _attention_keys(config: Any, layers: list[Any]) -> dict[str, Any]:
    attention = layers[0].mixer
    result: dict[str, Any] = {
        "num_attention_heads": attention.heads,
        "num_key_value_heads": attention.kv_heads,
        "head_dim": attention.head_size_for(config.hidden_size),
        "attention_dropout": attention.dropout,
    }
    rope = _rope_parameters(attention.rotary)
    if rope is not None:
        result["rope_parameters"] = rope
    return result


def _common_keys(config: Any, layers: list[Any]) -> dict[str, Any]:
    first = layers[0]
    result = {
        "vocab_size": config.embeddings.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": len(layers),
        "tie_word_embeddings": config.tied_embeddings,
        "rms_norm_eps": getattr(first.normalization, "epsilon", None),
    }
    result.update(_attention_keys(config, layers))
    if first.mlp.type_name == "mlp":
        result["intermediate_size"] = first.mlp.intermediate_size
    result["hidden_act"] = _activation(first.mlp.activation)
    return result


def _layer_types(layers: list[Any]) -> tuple[list[str], int | None]:
    windows = {layer.mixer.window_size for layer in layers} - {None}
    window = max(windows) if windows else None
    types = ["full_attention" if layer.mixer.window_size is None else "sliding_attention" for layer in layers]
    return types, window


# ---------------------------------------------------------------------- per model type


def _write_llama(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    attention, mlp = layers[0].mixer, layers[0].mlp
    result["attention_bias"] = attention.query.bias
    result["mlp_bias"] = mlp.up.bias
    return result


def _write_mistral(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    result["sliding_window"] = layers[0].mixer.window_size
    return result


def _write_qwen(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    layer_types, window = _layer_types(layers)
    result["use_sliding_window"] = window is not None
    result["sliding_window"] = window
    result["max_window_layers"] = len(layers)
    result["layer_types"] = layer_types
    return result


def _write_qwen3(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _write_qwen(config, layers)
    result["attention_bias"] = layers[0].mixer.query.bias
    return result


def _write_mixtral(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    moe = layers[0].mlp
    result.update(
        intermediate_size=moe.intermediate_size,
        num_local_experts=moe.experts,
        num_experts_per_tok=moe.experts_per_token,
        router_aux_loss_coef=moe.aux_loss_coefficient,
        sliding_window=layers[0].mixer.window_size,
    )
    return result


def _write_qwen2_moe(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    moe_layers = [index for index, layer in enumerate(layers) if layer.mlp.type_name == "moe"]
    dense_layers = [index for index, layer in enumerate(layers) if layer.mlp.type_name != "moe"]
    layer_types, window = _layer_types(layers)
    result.update(use_sliding_window=window is not None, sliding_window=window or 0, layer_types=layer_types)
    result["qkv_bias"] = layers[0].mixer.query.bias
    result["mlp_only_layers"] = dense_layers
    result["decoder_sparse_step"] = 1
    if dense_layers:
        result["intermediate_size"] = layers[dense_layers[0]].mlp.intermediate_size
    if moe_layers:
        moe = layers[moe_layers[0]].mlp
        result.update(
            num_experts=moe.experts,
            num_experts_per_tok=moe.experts_per_token,
            moe_intermediate_size=moe.intermediate_size,
            shared_expert_intermediate_size=moe.shared_expert_intermediate_size or 0,
            norm_topk_prob=moe.normalize_top_k,
            router_aux_loss_coef=moe.aux_loss_coefficient,
        )
    else:
        result["num_experts"] = 0
    return result


def _write_gemma2(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    attention = layers[0].mixer
    result["hidden_activation"] = result.pop("hidden_act")
    layer_types, window = _layer_types(layers)
    head_size = attention.head_size_for(config.hidden_size)
    scale = attention.softmax_scale if attention.softmax_scale is not None else head_size**-0.5
    result.update(
        attention_bias=attention.query.bias,
        query_pre_attn_scalar=_pre_attention_scalar(scale),
        attn_logit_softcapping=attention.soft_cap,
        final_logit_softcapping=config.head.logit_soft_cap,
        sliding_window=window,
        layer_types=layer_types,
    )
    return result


def _pre_attention_scalar(scale: float) -> int | float:
    scalar = scale**-2
    return round(scalar) if abs(scalar - round(scalar)) < 1e-6 * scalar else scalar


def _write_gpt2(config: Any, layers: list[Any]) -> dict[str, Any]:
    first = layers[0]
    attention, mlp = first.mixer, first.mlp
    return {
        "vocab_size": config.embeddings.vocab_size,
        "n_embd": config.hidden_size,
        "n_layer": len(layers),
        "n_head": attention.heads,
        "n_positions": config.embeddings.position_embeddings,
        "n_inner": mlp.intermediate_size,
        "activation_function": "gelu_new" if mlp.activation == "gelu_tanh" else _activation(mlp.activation),
        "layer_norm_epsilon": first.normalization.epsilon,
        "scale_attn_weights": attention.softmax_scale is None,
        "attn_pdrop": attention.dropout,
        "resid_pdrop": first.dropout,
        "embd_pdrop": config.embeddings.dropout,
        "tie_word_embeddings": config.tied_embeddings,
        "max_position_embeddings": config.embeddings.position_embeddings,
    }


def _write_phi3(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    result.update(sliding_window=layers[0].mixer.window_size, resid_pdrop=layers[0].dropout)
    return result


def _write_olmo2(config: Any, layers: list[Any]) -> dict[str, Any]:
    result = _common_keys(config, layers)
    result.update(attention_bias=layers[0].mixer.query.bias, rms_norm_eps=layers[0].post_mixer_normalization.epsilon)
    return result


_WRITERS: dict[str, Callable[[Any, list[Any]], dict[str, Any]]] = {
    "llama": _write_llama,
    "mistral": _write_mistral,
    "qwen2": _write_qwen,
    "qwen3": _write_qwen3,
    "mixtral": _write_mixtral,
    "qwen2_moe": _write_qwen2_moe,
    "gemma2": _write_gemma2,
    "gpt2": _write_gpt2,
    "phi3": _write_phi3,
    "olmo2": _write_olmo2,
}


# ---------------------------------------------------------------------- round-trip check


def architecture(config: ModelConfig) -> dict[str, Any]:
    """Return the fields of `config` that decide the network, with every layer's block spelled out.

    Training-only fields (`TRAINING_ONLY_FIELDS`) are left out, and the block sequence is
    written as one resolved block per layer, so configs that tile the same layers in
    different ways compare equal.
    """
    data = config.to_dict(resolved=True)
    layers = []
    for layer in config.transformer.layer_configs():
        layer_data = layer.to_dict(resolved=True)
        _fill_effective_values(layer_data, layer.resolved, config.hidden_size)
        layers.append(layer_data)
    data["transformer"] = {"layers": layers}
    return _strip(data)


def _fill_effective_values(layer_data: dict[str, Any], layer: Any, hidden_size: int) -> None:
    """Replace the unset fields of a layer that the build derives with the values it derives.

    An unset `head_groups` builds the same network as `head_groups: heads`, so both must
    compare equal. The same holds for `head_size` (hidden_size // heads), `softmax_scale`
    (head_size ** -0.5) and a shared expert size of None (0, no shared expert).
    """
    mixer, mixer_data = layer.mixer, layer_data.get("mixer")
    if isinstance(mixer_data, dict) and hasattr(mixer, "kv_heads") and hasattr(mixer, "head_size_for"):
        mixer_data["head_groups"] = mixer.kv_heads
        try:
            head_size = mixer.head_size_for(hidden_size)
        except ValueError:
            head_size = None  # the build rejects this config; leave the field for the error to name
        if head_size is not None:
            mixer_data["head_size"] = head_size
            if mixer_data.get("softmax_scale") is None:
                mixer_data["softmax_scale"] = head_size**-0.5
    mlp_data = layer_data.get("mlp")
    if isinstance(mlp_data, dict) and "shared_expert_intermediate_size" in mlp_data:
        mlp_data["shared_expert_intermediate_size"] = mlp_data["shared_expert_intermediate_size"] or 0


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        stripped = {key: _strip(item) for key, item in value.items() if key not in TRAINING_ONLY_FIELDS}
        return {key: item for key, item in stripped.items() if item != {}}
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def _check_round_trip(config: ModelConfig, hf: dict[str, Any], model_type: str) -> None:
    try:
        reimported = load_config(hf_config_to_dict(hf))
    except ConfigError as error:
        raise ConfigError(
            [ConfigIssue(path=issue.path, message=f"cannot be exported as model_type {model_type!r}: {issue.message}") for issue in error.issues]
        ) from None
    expected, actual = _flatten(architecture(config)), _flatten(architecture(reimported))
    issues = []
    for path in sorted(set(expected) | set(actual)):
        if expected.get(path, _MISSING) != actual.get(path, _MISSING):
            issues.append(
                ConfigIssue(
                    path=path,
                    message=f"has no equivalent in a {model_type!r} config.json (export would give "
                    f"{_show(actual.get(path, _MISSING))}); choose another model_type or change the field",
                    value=expected.get(path, _MISSING) if path in expected else None,
                )
            )
    if issues:
        raise ConfigError(_collapse_layers(issues))


def warn_about_differences(config: ModelConfig, file_config: ModelConfig, path: Any, *, log: logging.Logger | None = None) -> None:
    """Log a warning listing the fields of `config` that differ from `file_config`, read from `path`.

    `log` is the logger of the function the user called (default: this module's), so the
    warning can be filtered under that module's name.
    """
    configured, described = _flatten(architecture(config)), _flatten(architecture(file_config))
    # The first layer stands for all of them, so a difference is listed once.
    keys = [key for key in sorted(set(configured) | set(described)) if not key.startswith("transformer.layers[") or key.startswith("transformer.layers[0]")]
    differences = [f"{key}: config {configured.get(key)!r}, file {described.get(key)!r}" for key in keys if configured.get(key) != described.get(key)]
    if differences:
        (log or logger).warning("the given config differs from %s: %s", Path(path).name, "; ".join(differences))


_MISSING = object()


def _show(value: Any) -> str:
    return "no such field" if value is _MISSING else json.dumps(value)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return flat
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: value}


def _collapse_layers(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Keep the first layer's issue when every layer reports the same field."""
    seen: set[str] = set()
    collapsed = []
    for issue in issues:
        key = issue.path
        if key.startswith("transformer.layers["):
            key = "transformer.layers[*]" + key[key.index("]") + 1 :]
        if key in seen:
            continue
        seen.add(key)
        collapsed.append(issue)
    return collapsed

