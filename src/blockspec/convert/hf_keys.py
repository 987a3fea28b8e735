"""JSON types of the Hugging Face `config.json` keys that import reads, and the keys behind each blockspec field.

Import checks every value it reads against `KEY_TYPES` strictly: a bool is not an
integer and a string is not a number, although Python's `int()` and `float()` would
accept both. `hf_keys_of_field` maps a blockspec field path back to the keys that set
it, so a validation error of the imported config names the key to fix.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KEY_TYPES", "POSITIVE_KEYS", "ROPE_SETTING_TYPES", "hf_keys_of_field", "json_type_name", "type_problem"]

INTEGER, NUMBER, BOOLEAN, STRING, OBJECT, ARRAY = "integer", "number", "boolean", "string", "object", "array"

_NULLABLE = True
_REQUIRED = False

KEY_TYPES: dict[str, tuple[str, bool]] = {
    # key -> (JSON type, whether null is allowed)
    "vocab_size": (INTEGER, _REQUIRED),
    "hidden_size": (INTEGER, _REQUIRED),
    "intermediate_size": (INTEGER, _REQUIRED),
    "num_hidden_layers": (INTEGER, _REQUIRED),
    "num_attention_heads": (INTEGER, _REQUIRED),
    "num_key_value_heads": (INTEGER, _NULLABLE),
    "head_dim": (INTEGER, _NULLABLE),
    "max_position_embeddings": (INTEGER, _REQUIRED),
    "original_max_position_embeddings": (INTEGER, _NULLABLE),
    "sliding_window": (INTEGER, _NULLABLE),
    "max_window_layers": (INTEGER, _REQUIRED),
    "num_experts_per_tok": (INTEGER, _REQUIRED),
    "num_local_experts": (INTEGER, _REQUIRED),
    "num_experts": (INTEGER, _REQUIRED),
    "decoder_sparse_step": (INTEGER, _REQUIRED),
    "moe_intermediate_size": (INTEGER, _REQUIRED),
    "shared_expert_intermediate_size": (INTEGER, _NULLABLE),
    "n_embd": (INTEGER, _REQUIRED),
    "n_layer": (INTEGER, _REQUIRED),
    "n_head": (INTEGER, _REQUIRED),
    "n_positions": (INTEGER, _REQUIRED),
    "n_inner": (INTEGER, _NULLABLE),
    "rms_norm_eps": (NUMBER, _REQUIRED),
    "layer_norm_epsilon": (NUMBER, _REQUIRED),
    "rope_theta": (NUMBER, _NULLABLE),
    "partial_rotary_factor": (NUMBER, _NULLABLE),
    "attention_dropout": (NUMBER, _REQUIRED),
    "attn_pdrop": (NUMBER, _REQUIRED),
    "resid_pdrop": (NUMBER, _REQUIRED),
    "embd_pdrop": (NUMBER, _REQUIRED),
    "router_aux_loss_coef": (NUMBER, _REQUIRED),
    "router_jitter_noise": (NUMBER, _NULLABLE),
    "query_pre_attn_scalar": (NUMBER, _REQUIRED),
    "attn_logit_softcapping": (NUMBER, _NULLABLE),
    "final_logit_softcapping": (NUMBER, _NULLABLE),
    "tie_word_embeddings": (BOOLEAN, _REQUIRED),
    "attention_bias": (BOOLEAN, _REQUIRED),
    "mlp_bias": (BOOLEAN, _REQUIRED),
    "qkv_bias": (BOOLEAN, _REQUIRED),
    "use_sliding_window": (BOOLEAN, _REQUIRED),
    "norm_topk_prob": (BOOLEAN, _REQUIRED),
    "scale_attn_weights": (BOOLEAN, _REQUIRED),
    "scale_attn_by_inverse_layer_idx": (BOOLEAN, _REQUIRED),
    "reorder_and_upcast_attn": (BOOLEAN, _REQUIRED),
    "add_cross_attention": (BOOLEAN, _REQUIRED),
    "use_bidirectional_attention": (BOOLEAN, _NULLABLE),
    "hidden_act": (STRING, _REQUIRED),
    "hidden_activation": (STRING, _REQUIRED),
    "activation_function": (STRING, _REQUIRED),
    "rope_parameters": (OBJECT, _NULLABLE),
    "rope_scaling": (OBJECT, _NULLABLE),
    "layer_types": (ARRAY, _NULLABLE),
    "mlp_only_layers": (ARRAY, _NULLABLE),
}
"""Key of a `config.json` -> (JSON type, whether null is allowed), for every key that import reads and uses."""

POSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "hidden_size",
        "n_embd",
        "num_hidden_layers",
        "n_layer",
        "num_attention_heads",
        "n_head",
        "num_key_value_heads",
        "head_dim",
        "decoder_sparse_step",
        "max_position_embeddings",
        "n_positions",
    }
)
"""Integer keys that import divides by or repeats layers by, so 0 or a negative value is rejected before use."""

ROPE_SETTING_TYPES: dict[str, tuple[str, bool]] = {
    "rope_type": (STRING, _REQUIRED),
    "type": (STRING, _REQUIRED),
    "rope_theta": (NUMBER, _NULLABLE),
    "partial_rotary_factor": (NUMBER, _NULLABLE),
    "factor": (NUMBER, _NULLABLE),
    "low_freq_factor": (NUMBER, _NULLABLE),
    "high_freq_factor": (NUMBER, _NULLABLE),
    "original_max_position_embeddings": (INTEGER, _NULLABLE),
    "beta_fast": (NUMBER, _NULLABLE),
    "beta_slow": (NUMBER, _NULLABLE),
    "attention_factor": (NUMBER, _NULLABLE),
    "mscale": (NUMBER, _NULLABLE),
    "mscale_all_dim": (NUMBER, _NULLABLE),
    "truncate": (BOOLEAN, _NULLABLE),
}
"""Key inside `rope_parameters` or `rope_scaling` -> (JSON type, whether null is allowed)."""


def json_type_name(value: Any) -> str:
    """Return the JSON type of a value parsed from JSON ("null", "boolean", "string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, dict):
        return OBJECT
    if isinstance(value, list):
        return ARRAY
    return type(value).__name__


def type_problem(value: Any, expected: str, nullable: bool) -> str | None:
    """Return why `value` is not of the JSON type `expected`, or None when it is.

    An integer is a valid number, but a bool is neither, and a numeric string is not a number.
    """
    if value is None:
        return None if nullable else f"expected {_article(expected)} {expected}, got null"
    actual = json_type_name(value)
    if actual == expected or (expected == NUMBER and actual == INTEGER):
        return None
    hint = ""
    if actual == STRING and expected in (INTEGER, NUMBER):
        hint = "; write the number without quotes"
    elif actual == NUMBER and expected == INTEGER:
        hint = "; write a whole number without a decimal point"
    elif expected == BOOLEAN:
        hint = "; write true or false"
    return f"expected {_article(expected)} {expected}{' or null' if nullable else ''}, got {_article(actual)} {actual}{hint}"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_FIELD_KEYS: list[tuple[str, tuple[str, ...]]] = [
    # blockspec path suffix -> config.json keys that set it; the first suffix that matches wins.
    ("hidden_size", ("hidden_size", "n_embd")),
    ("embeddings.vocab_size", ("vocab_size",)),
    ("embeddings.position_embeddings", ("n_positions",)),
    ("transformer.num_layers", ("num_hidden_layers", "n_layer")),
    ("mixer.heads", ("num_attention_heads", "n_head")),
    ("mixer.head_groups", ("num_key_value_heads",)),
    ("mixer.head_size", ("head_dim", "hidden_size", "num_attention_heads", "n_embd", "n_head")),
    ("mixer.window_size", ("sliding_window",)),
    ("mixer.softmax_scale", ("query_pre_attn_scalar",)),
    ("mixer.soft_cap", ("attn_logit_softcapping",)),
    ("mixer.dropout", ("attention_dropout", "attn_pdrop")),
    ("rotary.fraction", ("rope_parameters", "rope_scaling", "partial_rotary_factor", "head_dim")),
    ("normalization.epsilon", ("rms_norm_eps", "layer_norm_epsilon")),
    ("norm.epsilon", ("rms_norm_eps",)),
    ("mlp.experts_per_token", ("num_experts_per_tok",)),
    ("mlp.experts", ("num_local_experts", "num_experts")),
    ("mlp.shared_expert_intermediate_size", ("shared_expert_intermediate_size",)),
    ("mlp.intermediate_size", ("intermediate_size", "moe_intermediate_size", "n_inner")),
    ("mlp.aux_loss_coefficient", ("router_aux_loss_coef",)),
    ("head.logit_soft_cap", ("final_logit_softcapping",)),
    ("dropout", ("resid_pdrop", "embd_pdrop")),
]


def hf_keys_of_field(path: str, model_type: str) -> list[str]:
    """Return the config.json keys that may have set the blockspec field at `path` (empty when unknown).

    `path` is a validation error's field path of an imported config, such as
    `transformer.block.mixer.head_groups`. The caller keeps only the keys that its
    reader used, so a key of another model type never appears.
    """
    for suffix, keys in _FIELD_KEYS:
        if path.endswith(suffix):
            return list(keys)
    if ".rotary." in path or path.endswith(".rotary"):
        return ["rope_parameters", "rope_scaling", "rope_theta"]
    return []
