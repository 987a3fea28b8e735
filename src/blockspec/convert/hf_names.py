"""Tensor names of Hugging Face checkpoints and how each maps onto blockspec parameters.

A `TensorRecipe` describes one tensor of a checkpoint as blockspec parameters: the
parameters named by its `parts` (one expert of a batched expert weight when `expert` is
set), concatenated along `dim`, then transposed for GPT-2's Conv1D layout. Export
follows a recipe forwards; import splits the checkpoint tensor the other way. The names
are those that transformers 5 `save_pretrained` writes, which are also the Hub names
(including one tensor per expert for Mixtral and Qwen2-MoE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TensorPart", "TensorRecipe", "hf_tensor_recipes"]


@dataclass(frozen=True)
class TensorPart:
    """A blockspec parameter, or one expert's slice of a batched expert parameter."""

    name: str
    """Parameter name in the blockspec model (as `named_parameters` gives it)."""
    expert: int | None = None
    """Index into the first dimension of a batched expert weight; None means the whole parameter."""


@dataclass(frozen=True)
class TensorRecipe:
    """The recipe of one checkpoint tensor: which blockspec parameters it is built from."""

    name: str
    """Tensor name in the checkpoint."""
    parts: tuple[TensorPart, ...]
    """Parameters concatenated (along `dim`) to form the tensor."""
    dim: int = 0
    """Concatenation dimension, in blockspec's (out, in) orientation."""
    transpose: bool = False
    """Whether the checkpoint stores the transpose (GPT-2 Conv1D weights are (in, out))."""
    optional: bool = False
    """Whether import accepts a checkpoint without this tensor (a tied output weight)."""


def _simple(name: str, parameter: str, **options: Any) -> TensorRecipe:
    return TensorRecipe(name, (TensorPart(parameter),), **options)


def hf_tensor_recipes(config: Any, model_type: str, *, fused_experts: bool = False) -> list[TensorRecipe]:
    """Return the checkpoint tensors of a blockspec `lm` config exported as `model_type`.

    `config` is a resolved `LanguageModelConfig`. With `fused_experts`, MoE layers use the
    batched names of transformers' modules (`mlp.experts.gate_up_proj`, `mlp.experts.down_proj`)
    instead of one tensor per expert.
    """
    layers = [layer.resolved for layer in config.transformer.layer_configs()]
    if model_type == "gpt2":
        return _gpt2_recipes(config, layers)
    recipes = [_simple("model.embed_tokens.weight", "embeddings.word_weight")]
    for index, layer in enumerate(layers):
        recipes.extend(_decoder_layer_recipes(layer, index, model_type, fused_experts=fused_experts))
    recipes.append(_simple("model.norm.weight", "head.normalization.weight"))
    if config.tied_embeddings:
        recipes.append(_simple("lm_head.weight", "embeddings.word_weight", optional=True))
    else:
        recipes.append(_simple("lm_head.weight", "head.output_weight"))
    return recipes


_ATTENTION_NAMES = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "output": "o_proj"}
_MLP_NAMES = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
_MIXTRAL_EXPERT_NAMES = {"gate_weight": "w1", "down_weight": "w2", "up_weight": "w3"}
_QWEN_EXPERT_NAMES = {"gate_weight": "gate_proj", "up_weight": "up_proj", "down_weight": "down_proj"}


def _decoder_layer_recipes(layer: Any, index: int, model_type: str, *, fused_experts: bool) -> list[TensorRecipe]:
    source = f"model.layers.{index}"
    target = f"transformer.layers.{index}"
    recipes = []
    if model_type != "olmo2":
        recipes.append(_simple(f"{source}.input_layernorm.weight", f"{target}.mixer_normalization.weight"))
    if model_type == "olmo2":
        recipes += [
            _simple(f"{source}.post_attention_layernorm.weight", f"{target}.post_mixer_normalization.weight"),
            _simple(f"{source}.post_feedforward_layernorm.weight", f"{target}.post_mlp_normalization.weight"),
        ]
    elif model_type == "gemma2":
        recipes += [
            _simple(f"{source}.post_attention_layernorm.weight", f"{target}.post_mixer_normalization.weight"),
            _simple(f"{source}.pre_feedforward_layernorm.weight", f"{target}.mlp_normalization.weight"),
            _simple(f"{source}.post_feedforward_layernorm.weight", f"{target}.post_mlp_normalization.weight"),
        ]
    else:
        recipes.append(_simple(f"{source}.post_attention_layernorm.weight", f"{target}.mlp_normalization.weight"))

    attention = layer.mixer
    if model_type == "phi3":
        recipes += _phi3_recipes(layer, source, target)
        return recipes
    for name, hf_name in _ATTENTION_NAMES.items():
        recipes.append(_simple(f"{source}.self_attn.{hf_name}.weight", f"{target}.mixer.{name}.weight"))
        if getattr(attention, name).bias:
            recipes.append(_simple(f"{source}.self_attn.{hf_name}.bias", f"{target}.mixer.{name}.bias"))
    if attention.query_norm is not None:
        recipes.append(_simple(f"{source}.self_attn.q_norm.weight", f"{target}.mixer.query_norm.weight"))
    if attention.key_norm is not None:
        recipes.append(_simple(f"{source}.self_attn.k_norm.weight", f"{target}.mixer.key_norm.weight"))

    mlp = layer.mlp
    if mlp.type_name == "moe":
        recipes += _moe_recipes(mlp, source, f"{target}.mlp", model_type, fused=fused_experts)
    else:
        recipes += _mlp_recipes(mlp, f"{source}.mlp", f"{target}.mlp")
    return recipes


def _phi3_recipes(layer: Any, source: str, target: str) -> list[TensorRecipe]:
    """Phi-3 fuses query, key and value into `qkv_proj` and gate and up into `gate_up_proj`, in that order."""
    qkv = tuple(TensorPart(f"{target}.mixer.{name}.weight") for name in ("query", "key", "value"))
    gate_up = (TensorPart(f"{target}.mlp.gate.weight"), TensorPart(f"{target}.mlp.up.weight"))
    return [
        TensorRecipe(f"{source}.self_attn.qkv_proj.weight", qkv),
        _simple(f"{source}.self_attn.o_proj.weight", f"{target}.mixer.output.weight"),
        TensorRecipe(f"{source}.mlp.gate_up_proj.weight", gate_up),
        _simple(f"{source}.mlp.down_proj.weight", f"{target}.mlp.down.weight"),
    ]


def _mlp_recipes(mlp: Any, source: str, target: str) -> list[TensorRecipe]:
    recipes = []
    for name, hf_name in _MLP_NAMES.items():
        if name == "gate" and not mlp.gated:
            continue
        recipes.append(_simple(f"{source}.{hf_name}.weight", f"{target}.{name}.weight"))
        if getattr(mlp, name).bias:
            recipes.append(_simple(f"{source}.{hf_name}.bias", f"{target}.{name}.bias"))
    return recipes


def _moe_recipes(moe: Any, source: str, target: str, model_type: str, *, fused: bool) -> list[TensorRecipe]:
    prefix = f"{source}.block_sparse_moe" if model_type == "mixtral" and not fused else f"{source}.mlp"
    recipes = [_simple(f"{prefix}.gate.weight", f"{target}.router.weight")]
    if moe.router.bias:
        recipes.append(_simple(f"{prefix}.gate.bias", f"{target}.router.bias"))
    if fused:
        gate_up = (TensorPart(f"{target}.gate_weight"), TensorPart(f"{target}.up_weight")) if moe.gated else (TensorPart(f"{target}.up_weight"),)
        recipes.append(TensorRecipe(f"{prefix}.experts.gate_up_proj", gate_up, dim=1))
        recipes.append(_simple(f"{prefix}.experts.down_proj", f"{target}.down_weight"))
    else:
        names = _MIXTRAL_EXPERT_NAMES if model_type == "mixtral" else _QWEN_EXPERT_NAMES
        for expert in range(moe.experts):
            for parameter, hf_name in names.items():
                if parameter == "gate_weight" and not moe.gated:
                    continue
                part = TensorPart(f"{target}.{parameter}", expert=expert)
                recipes.append(TensorRecipe(f"{prefix}.experts.{expert}.{hf_name}.weight", (part,)))
    if moe.shared_expert_intermediate_size:
        shared = moe.shared_expert_config().resolved
        recipes += _mlp_recipes(shared, f"{prefix}.shared_expert", f"{target}.shared_expert")
    if moe.shared_expert_gate:
        recipes.append(_simple(f"{prefix}.shared_expert_gate.weight", f"{target}.shared_expert_gate.weight"))
    return recipes


def _conv1d(name: str, parameter: str) -> TensorRecipe:
    """GPT-2 stores its linear weights as Conv1D, (in, out), the transpose of blockspec's (out, in)."""
    return _simple(name, parameter, transpose=True)


def _gpt2_recipes(config: Any, layers: list[Any]) -> list[TensorRecipe]:
    recipes = [
        _simple("transformer.wte.weight", "embeddings.word_weight"),
        _simple("transformer.wpe.weight", "embeddings.position_weight"),
    ]
    for index in range(len(layers)):
        source = f"transformer.h.{index}"
        target = f"transformer.layers.{index}"
        attention = f"{target}.mixer"
        qkv_weights = tuple(TensorPart(f"{attention}.{name}.weight") for name in ("query", "key", "value"))
        qkv_biases = tuple(TensorPart(f"{attention}.{name}.bias") for name in ("query", "key", "value"))
        recipes += [
            _simple(f"{source}.ln_1.weight", f"{target}.mixer_normalization.weight"),
            _simple(f"{source}.ln_1.bias", f"{target}.mixer_normalization.bias"),
            TensorRecipe(f"{source}.attn.c_attn.weight", qkv_weights, dim=0, transpose=True),
            TensorRecipe(f"{source}.attn.c_attn.bias", qkv_biases, dim=0),
            _conv1d(f"{source}.attn.c_proj.weight", f"{attention}.output.weight"),
            _simple(f"{source}.attn.c_proj.bias", f"{attention}.output.bias"),
            _simple(f"{source}.ln_2.weight", f"{target}.mlp_normalization.weight"),
            _simple(f"{source}.ln_2.bias", f"{target}.mlp_normalization.bias"),
            _conv1d(f"{source}.mlp.c_fc.weight", f"{target}.mlp.up.weight"),
            _simple(f"{source}.mlp.c_fc.bias", f"{target}.mlp.up.bias"),
            _conv1d(f"{source}.mlp.c_proj.weight", f"{target}.mlp.down.weight"),
            _simple(f"{source}.mlp.c_proj.bias", f"{target}.mlp.down.bias"),
        ]
    recipes += [
        _simple("transformer.ln_f.weight", "head.normalization.weight"),
        _simple("transformer.ln_f.bias", "head.normalization.bias"),
    ]
    if not config.tied_embeddings:
        recipes.append(_simple("lm_head.weight", "head.output_weight"))
    else:
        recipes.append(_simple("lm_head.weight", "embeddings.word_weight", optional=True))
    return recipes
