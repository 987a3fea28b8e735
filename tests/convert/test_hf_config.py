"""Hugging Face config.json import and export against transformers' own config classes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import blockspec
from blockspec import ConfigError
from blockspec.convert import config_from_hf, config_to_hf

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "data" / "hf-configs"
DECODER_FILES = [
    "Llama-3.1-8B.json",
    "Llama-3.2-1B.json",
    "Mistral-7B-Instruct-v0.1.json",
    "Mixtral-8x7B-Instruct-v0.1.json",
    "Qwen2.5-0.5B.json",
    "Qwen3-0.6B.json",
    "SmolLM2-135M-Instruct.json",
    "SmolLM2-135M.transformers-v5-resave.json",
    "gpt2.json",
]


def _reference(name: str) -> dict:
    return json.loads((REFERENCE_DIR / name).read_text())


def _transformers_config(data: dict):
    return transformers.CONFIG_MAPPING[data["model_type"]].from_dict(copy.deepcopy(data))


def _transformers_parameter_count(data: dict) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(_transformers_config(data))
    return model.num_parameters()


def _blockspec_parameter_count(config) -> int:
    model = config.build(device="meta")
    return sum(parameter.numel() for parameter in model.parameters())


def _tiny(model_type: str, **overrides) -> dict:
    """A small config.json of `model_type`, as transformers 5 writes it."""
    common = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2}
    if model_type == "gpt2":
        common = {"vocab_size": 64, "n_embd": 32, "n_layer": 4, "n_head": 4, "n_positions": 40}
    if model_type == "phi3":
        common = {**common, "pad_token_id": 0, "eos_token_id": 1}  # the defaults lie outside the small vocabulary
    config = transformers.CONFIG_MAPPING[model_type](**{**common, **overrides})
    return config.to_dict()


# ---------------------------------------------------------------------- the reference files


@pytest.mark.parametrize("name", DECODER_FILES)
def test_reference_file_parameter_count(name):
    data = _reference(name)
    config = config_from_hf(data)

    expected = _transformers_parameter_count(data)
    assert config.num_parameters() == expected
    assert _blockspec_parameter_count(config) == expected


@pytest.mark.parametrize("name", DECODER_FILES)
def test_reference_file_round_trip(name):
    config = config_from_hf(REFERENCE_DIR / name)

    exported = config_to_hf(config)

    assert config_from_hf(exported) == config
    assert exported["model_type"] == _reference(name)["model_type"]
    assert type(_transformers_config(exported)).__name__ == type(_transformers_config(_reference(name))).__name__


@pytest.mark.parametrize("name", ["bert-base-uncased.json", "all-MiniLM-L6-v2.json"])
def test_reference_encoder_rejected(name):
    with pytest.raises(ConfigError, match=r"model_type: 'bert' is an encoder-only model.*supported: llama"):
        config_from_hf(REFERENCE_DIR / name)


def test_reference_mamba_rejected():
    with pytest.raises(ConfigError, match=r"model_type: 'mamba' is a state-space model"):
        config_from_hf(REFERENCE_DIR / "mamba-130m-hf.derivative-DharMamba.json")


def test_reference_smollm2_matches_example_yaml():
    example = Path(__file__).resolve().parents[2] / "examples" / "smollm2-135m.yaml"
    imported = config_from_hf(REFERENCE_DIR / "SmolLM2-135M-Instruct.json")
    resaved = config_from_hf(REFERENCE_DIR / "SmolLM2-135M.transformers-v5-resave.json")

    from blockspec.convert.hf_export import architecture

    assert architecture(imported) == architecture(blockspec.load_config(example))
    assert resaved == imported


def test_reference_directory_source(tmp_path):
    (tmp_path / "config.json").write_text((REFERENCE_DIR / "Qwen3-0.6B.json").read_text())

    config = config_from_hf(tmp_path)

    mixer = config.transformer.block.mixer
    assert (mixer.heads, mixer.head_groups, mixer.head_size) == (16, 8, 128)
    assert mixer.query_norm.epsilon == 1e-6
    assert config.tied_embeddings is True


# ---------------------------------------------------------------------- defaults and head size


def test_missing_keys_take_class_defaults():
    config = config_from_hf({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2})
    mixer = config.transformer.block.mixer

    assert config.embeddings.vocab_size == 32000
    assert config.transformer.block.mlp.intermediate_size == 11008
    assert mixer.head_groups == 4  # num_key_value_heads None -> num_attention_heads
    assert mixer.rotary.theta == 10000.0
    assert config.transformer.block.normalization.epsilon == 1e-6
    assert config.tied_embeddings is False


def test_mixtral_default_theta_is_a_million():
    config = config_from_hf({"model_type": "mixtral", "num_hidden_layers": 1})

    assert config.transformer.block.mixer.rotary.theta == 1_000_000.0


def test_explicit_head_dim_wins():
    data = _tiny("llama", head_dim=24)
    config = config_from_hf(data)

    assert config.transformer.block.mixer.head_size == 24
    assert _blockspec_parameter_count(config) == _transformers_parameter_count(data)


def test_null_head_dim_is_derived():
    config = config_from_hf({**_tiny("mistral"), "head_dim": None})

    assert config.transformer.block.mixer.head_size == 8


# ---------------------------------------------------------------------- rotary spellings


LLAMA3_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


@pytest.mark.parametrize(
    "rope_keys",
    [
        {"rope_theta": 500000.0, "rope_scaling": {**LLAMA3_SCALING, "rope_type": "llama3"}},
        {"rope_theta": 500000.0, "rope_scaling": {**LLAMA3_SCALING, "type": "llama3"}},
        {"rope_parameters": {**LLAMA3_SCALING, "rope_type": "llama3", "rope_theta": 500000.0}},
    ],
    ids=["rope_type", "legacy_type", "rope_parameters"],
)
def test_rope_llama3_spellings(rope_keys):
    data = {k: v for k, v in _tiny("llama").items() if k != "rope_parameters"}
    rotary = config_from_hf({**data, **rope_keys}).transformer.block.mixer.rotary

    assert rotary.type_name == "llama3"
    assert rotary.theta == 500000.0
    assert (rotary.factor, rotary.low_frequency_factor, rotary.high_frequency_factor) == (8.0, 1.0, 4.0)
    assert rotary.original_context_length == 8192


def test_rope_linear_and_yarn():
    base = {k: v for k, v in _tiny("llama").items() if k != "rope_parameters"}
    linear = config_from_hf({**base, "rope_scaling": {"type": "linear", "factor": 2.0}}).transformer.block.mixer.rotary
    yarn = config_from_hf(
        {**base, "max_position_embeddings": 4096, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 16}}
    ).transformer.block.mixer.rotary

    assert (linear.type_name, linear.factor, linear.theta) == ("linear", 2.0, 10000.0)
    assert (yarn.type_name, yarn.factor, yarn.original_context_length, yarn.beta_fast, yarn.beta_slow) == ("yarn", 4.0, 1024, 16.0, 1.0)


def test_rope_partial_rotary_factor():
    data = {**_tiny("phi3"), "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}}

    assert config_from_hf(data).transformer.block.mixer.rotary.fraction == 0.5


def test_rope_partial_rejected_where_transformers_rotates_whole_heads():
    data = {**_tiny("llama"), "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}}

    with pytest.raises(ConfigError, match=r"rope_parameters.partial_rotary_factor: transformers' llama rotates whole heads"):
        config_from_hf(data)


def test_rope_dynamic_rejected():
    data = {**_tiny("llama"), "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}}

    with pytest.raises(ConfigError, match=r"rope_parameters.rope_type: unsupported rotary scaling.*default, linear, llama3, yarn"):
        config_from_hf(data)


def test_rope_conflicting_type_spellings_rejected():
    data = {**_tiny("llama"), "rope_scaling": {"type": "linear", "rope_type": "llama3", **LLAMA3_SCALING}}

    with pytest.raises(ConfigError, match=r"rope_scaling.type: disagrees with rope_type='llama3'"):
        config_from_hf(data)


# ---------------------------------------------------------------------- sliding windows


def _windows(config) -> list:
    return [layer.mixer.window_size for layer in config.transformer.layer_configs()]


def _transformers_windows(data: dict) -> list:
    hf = _transformers_config(data)
    window = hf.sliding_window
    return [window if layer_type == "sliding_attention" else None for layer_type in hf.layer_types]


@pytest.mark.parametrize(
    ("model_type", "keys"),
    [
        ("qwen2", {"use_sliding_window": True, "sliding_window": 7, "max_window_layers": 2}),
        ("qwen2", {"use_sliding_window": False, "sliding_window": 7, "max_window_layers": 2}),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 7, "max_window_layers": 0}),
        ("qwen3", {"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 3}),
        ("qwen2_moe", {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 3, "num_experts": 4, "num_experts_per_tok": 2}),
        ("gemma2", {"sliding_window": 9, "head_dim": 8}),
        ("gemma2", {"sliding_window": 9, "head_dim": 8, "num_hidden_layers": 3}),
    ],
)
def test_windows_match_transformers(model_type, keys):
    # The defaults give only the keys the class writes; build from the class to get its layer_types.
    data = {k: v for k, v in _tiny(model_type, **keys).items() if k != "layer_types"}

    assert _windows(config_from_hf(data)) == _transformers_windows(data)


def test_qwen2_windows_from_max_window_layers():
    data = {k: v for k, v in _tiny("qwen2", use_sliding_window=True, sliding_window=7, max_window_layers=2).items() if k != "layer_types"}
    config = config_from_hf(data)

    assert _windows(config) == [None, None, 7, 7]
    assert config.transformer.overrides[0].layers == "2:"
    assert config.transformer.overrides[0].set == {"mixer.window_size": 7}


def test_gemma2_alternating_windows_use_a_pattern():
    config = config_from_hf(_tiny("gemma2", sliding_window=9, head_dim=8))

    assert config.transformer.pattern == ["local", "global"]
    assert config.transformer.blocks["local"].mixer.window_size == 9
    assert config.transformer.blocks["global"].mixer.window_size is None


def test_explicit_layer_types_win():
    data = {**_tiny("qwen2", use_sliding_window=True, sliding_window=7), "layer_types": ["sliding_attention", "full_attention", "full_attention", "sliding_attention"]}

    assert _windows(config_from_hf(data)) == [7, None, None, 7]


def test_mistral_window_on_every_layer():
    assert _windows(config_from_hf(_tiny("mistral", sliding_window=11))) == [11] * 4


# ---------------------------------------------------------------------- biases, experts, gemma2, gpt2


def test_qwen2_biases_on_query_key_value_only():
    mixer = config_from_hf(_tiny("qwen2")).transformer.block.mixer.resolved

    assert (mixer.query.bias, mixer.key.bias, mixer.value.bias, mixer.output.bias) == (True, True, True, False)


def test_llama_attention_and_mlp_bias():
    block = config_from_hf(_tiny("llama", attention_bias=True, mlp_bias=True)).transformer.block.resolved

    assert (block.mixer.query.bias, block.mixer.output.bias) == (True, True)
    assert (block.mlp.gate.bias, block.mlp.up.bias, block.mlp.down.bias) == (True, True, True)


def test_qwen2_moe_dense_layers_and_shared_expert():
    data = _tiny("qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=24, mlp_only_layers=[1], decoder_sparse_step=1)
    config = config_from_hf(data)
    mlps = [layer.mlp for layer in config.transformer.layer_configs()]

    assert [mlp.type_name for mlp in mlps] == ["moe", "mlp", "moe", "moe"]
    assert (mlps[0].experts, mlps[0].experts_per_token, mlps[0].intermediate_size) == (4, 2, 16)
    assert (mlps[0].shared_expert_intermediate_size, mlps[0].shared_expert_gate, mlps[0].normalize_top_k) == (24, True, False)
    assert mlps[1].intermediate_size == 48
    assert _blockspec_parameter_count(config) == _transformers_parameter_count(data)


def test_qwen2_moe_sparse_step():
    data = _tiny("qwen2_moe", num_experts=4, num_experts_per_tok=2, decoder_sparse_step=2)
    mlps = [layer.mlp.type_name for layer in config_from_hf(data).transformer.layer_configs()]

    assert mlps == ["mlp", "moe", "mlp", "moe"]
    assert _blockspec_parameter_count(config_from_hf(data)) == _transformers_parameter_count(data)


def test_mixtral_experts():
    moe = config_from_hf(_tiny("mixtral", num_local_experts=6, num_experts_per_tok=3, router_aux_loss_coef=0.05)).transformer.block.mlp

    assert (moe.experts, moe.experts_per_token, moe.normalize_top_k, moe.aux_loss_coefficient) == (6, 3, True, 0.05)


def test_gemma2_fields():
    data = _tiny("gemma2", head_dim=8, query_pre_attn_scalar=16, attn_logit_softcapping=40.0, final_logit_softcapping=20.0)
    config = config_from_hf(data)
    block = config.transformer.blocks["global"]

    assert block.mixer.softmax_scale == 0.25
    assert block.mixer.soft_cap == 40.0
    assert config.head.logit_soft_cap == 20.0
    assert block.normalization.zero_centered is True
    assert block.post_mixer_normalization.zero_centered is True
    assert block.post_mlp_normalization.zero_centered is True
    assert block.mlp.activation == "gelu_tanh"
    assert config.embeddings.scale == pytest.approx(32**0.5)
    assert _blockspec_parameter_count(config) == _transformers_parameter_count(data)


def test_gpt2_fields():
    data = _tiny("gpt2", n_inner=80)
    config = config_from_hf(data)
    block = config.transformer.block.resolved

    assert config.embeddings.position_embeddings == 40
    assert (block.mixer.heads, block.mixer.head_size, block.mixer.rotary.type_name) == (4, 8, "none")
    assert (block.mlp.gated, block.mlp.intermediate_size, block.mlp.activation) == (False, 80, "gelu_tanh")
    assert block.mixer.output.bias and block.mlp.down.bias
    assert block.normalization.type_name == "layer_norm"
    assert (block.mixer.dropout, block.dropout, config.embeddings.dropout) == (0.1, 0.1, 0.1)
    assert _blockspec_parameter_count(config) == _transformers_parameter_count(data)


def test_phi3_fields():
    data = EXPORT_CASES["phi3"]
    config = config_from_hf({**data, "resid_pdrop": 0.1})
    mixer = config.transformer.block.mixer

    assert mixer.rotary.fraction == 0.5
    assert mixer.window_size == 7
    assert config.transformer.block.dropout == 0.1
    assert _blockspec_parameter_count(config) == _transformers_parameter_count(data)


def test_olmo2_fields():
    data = EXPORT_CASES["olmo2"]
    config = config_from_hf(data)
    block = config.transformer.block

    assert block.normalization.type_name == "none"
    assert block.post_mixer_normalization.type_name == "rms_norm"
    assert block.post_mlp_normalization.type_name == "rms_norm"
    assert block.mixer.qk_norm_per_head is False
    assert block.mixer.query_norm.epsilon == 1e-5
    assert _blockspec_parameter_count(config) == _transformers_parameter_count(data)


def test_gpt2_unscaled_attention():
    config = config_from_hf(_tiny("gpt2", scale_attn_weights=False))

    assert config.transformer.block.mixer.softmax_scale == 1.0


# ---------------------------------------------------------------------- rejections


def test_unknown_key_rejected():
    with pytest.raises(ConfigError, match=r"use_fancy_attention: unknown key for model_type 'llama'.*ignore_keys=\['use_fancy_attention'\]"):
        config_from_hf({**_tiny("llama"), "use_fancy_attention": True})


def test_unknown_key_ignored_on_request():
    config = config_from_hf({**_tiny("llama"), "use_fancy_attention": True}, ignore_keys=["use_fancy_attention"])

    assert config.transformer.num_layers == 4


def test_bookkeeping_keys_ignored():
    data = {**_tiny("llama"), "architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16", "transformers_version": "4.43.0", "bos_token_id": 5, "eos_token_id": [6, 7], "_name_or_path": "x"}

    assert config_from_hf(data) == config_from_hf(_tiny("llama"))


@pytest.mark.parametrize(
    ("model_type", "keys", "message"),
    [
        ("mixtral", {"router_jitter_noise": 0.1}, r"router_jitter_noise: router jitter noise has no blockspec field"),
        ("llama", {"hidden_act": "gelu_fast"}, r"hidden_act: unsupported activation"),
        ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, r"scale_attn_by_inverse_layer_idx: per-layer attention scaling is not supported"),
        ("gpt2", {"add_cross_attention": True}, r"add_cross_attention: cross-attention is not supported"),
        ("gemma2", {"use_bidirectional_attention": True, "head_dim": 8}, r"use_bidirectional_attention: bidirectional Gemma 2 is not supported"),
        ("llama", {"rope_interleaved": True}, r"rope_interleaved: unknown key"),
        ("qwen2", {"layer_types": ["full_attention", "chunked_attention", "full_attention", "full_attention"]}, r"layer_types\[1\]: unsupported layer type"),
    ],
)
def test_unrepresentable_value_rejected(model_type, keys, message):
    with pytest.raises(ConfigError, match=message):
        config_from_hf({**_tiny(model_type), **keys})


def test_every_problem_reported_at_once():
    data = {**_tiny("llama"), "hidden_act": "gelu_fast", "foo": 1}

    with pytest.raises(ConfigError) as error:
        config_from_hf(data)

    assert sorted(issue.path for issue in error.value.issues) == ["foo", "hidden_act"]


def test_attention_dropout_imported():
    config = config_from_hf({**_tiny("llama"), "attention_dropout": 0.1})

    assert config.transformer.block.mixer.dropout == 0.1


def test_missing_file_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        config_from_hf(tmp_path)


# ---------------------------------------------------------------------- export


EXPORT_CASES = {
    "llama": _tiny("llama", attention_bias=True, head_dim=16),
    "mistral": _tiny("mistral", sliding_window=11),
    "qwen2": _tiny("qwen2", use_sliding_window=True, sliding_window=7, max_window_layers=2),
    "qwen3": _tiny("qwen3", head_dim=16, tie_word_embeddings=True),
    "mixtral": _tiny("mixtral", num_local_experts=4),
    "qwen2_moe": _tiny("qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=24, mlp_only_layers=[2]),
    "gemma2": _tiny("gemma2", head_dim=8, sliding_window=9),
    "gpt2": _tiny("gpt2"),
    "phi3": _tiny("phi3", sliding_window=7, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
    "olmo2": _tiny("olmo2", attention_bias=True),
}


@pytest.mark.parametrize("model_type", sorted(EXPORT_CASES))
def test_export_round_trip(model_type):
    config = config_from_hf(EXPORT_CASES[model_type])

    exported = config_to_hf(config)

    assert exported["model_type"] == model_type
    assert config_from_hf(exported) == config
    hf = _transformers_config(exported)
    assert type(hf).__name__ == type(_transformers_config(EXPORT_CASES[model_type])).__name__
    assert _transformers_parameter_count(exported) == config.num_parameters()


@pytest.mark.parametrize("model_type", ["qwen2", "qwen2_moe", "gemma2"])
def test_export_keeps_windows(model_type):
    config = config_from_hf(EXPORT_CASES[model_type])

    exported = config_to_hf(config)

    assert _transformers_windows(exported) == _windows(config)


def test_export_yaml_example():
    config = blockspec.load_config(Path(__file__).resolve().parents[2] / "examples" / "smollm2-135m.yaml")

    exported = config_to_hf(config, extra={"bos_token_id": 1, "eos_token_id": 2})

    assert exported["architectures"] == ["LlamaForCausalLM"]
    assert (exported["num_attention_heads"], exported["num_key_value_heads"], exported["head_dim"]) == (9, 3, 64)
    assert exported["rope_parameters"] == {"rope_type": "default", "rope_theta": 100000.0}
    assert exported["eos_token_id"] == 2
    assert _transformers_parameter_count(exported) == config.num_parameters()


def test_export_unrepresentable_field_rejected():
    config = config_from_hf(_tiny("llama")).with_overrides({"head.logits_scale": 2.0})

    with pytest.raises(ConfigError, match=r"head.logits_scale: has no equivalent in a 'llama' config.json"):
        config_to_hf(config)


def test_export_to_explicit_model_type_rejected_when_different():
    config = config_from_hf(_tiny("qwen2"))

    with pytest.raises(ConfigError, match=r"mixer.query.bias: has no equivalent in a 'mistral' config.json"):
        config_to_hf(config, model_type="mistral")


def test_export_nulls_token_ids_outside_vocabulary():
    exported = config_to_hf(config_from_hf(EXPORT_CASES["phi3"]))
    with_extra = config_to_hf(config_from_hf(EXPORT_CASES["phi3"]), extra={"pad_token_id": 3})

    assert exported["pad_token_id"] is None
    assert exported["eos_token_id"] is None
    assert "bos_token_id" not in exported  # the default 1 is a valid id, so transformers keeps it
    assert with_extra["pad_token_id"] == 3


def test_export_max_position_embeddings():
    llama3 = config_from_hf({**_tiny("llama"), "rope_parameters": {**LLAMA3_SCALING, "rope_type": "llama3", "rope_theta": 5e5}})

    assert config_to_hf(llama3)["max_position_embeddings"] == 8192 * 8
    assert config_to_hf(config_from_hf(_tiny("llama")))["max_position_embeddings"] == 2048
    assert config_to_hf(config_from_hf(_tiny("llama")), max_position_embeddings=4096)["max_position_embeddings"] == 4096


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
# Shipped examples that no supported model type can express, with a field that shows why.
UNEXPORTABLE_EXAMPLES = {
    # Its global layers use another rotary theta than its local ones; one config.json has one theta.
    "hybrid-sliding-window.yaml": "rotary.theta",
}


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES_DIR.glob("*.yaml")))
def test_export_every_yaml_example(name):
    config = blockspec.load_config(EXAMPLES_DIR / name)

    if name in UNEXPORTABLE_EXAMPLES:
        with pytest.raises(ConfigError, match=UNEXPORTABLE_EXAMPLES[name]):
            config_to_hf(config)
        return
    exported = config_to_hf(config)

    hf = _transformers_config(json.loads(json.dumps(exported)))
    assert hf.model_type == exported["model_type"]
    assert config_from_hf(exported) == config_from_hf(config_to_hf(config_from_hf(exported)))
    assert _transformers_parameter_count(exported) == config.num_parameters()


def test_export_unset_head_fields_compare_as_derived():
    config = blockspec.load_config(EXAMPLES_DIR / "gpt2-small.yaml")
    mixer = config.transformer.layer_configs()[0].mixer
    assert (mixer.head_groups, mixer.head_size) == (None, None)

    exported = config_to_hf(config)

    assert exported["n_head"] == 12
    assert exported["n_embd"] == 768


def test_export_explicit_head_size_must_still_match():
    config = config_from_hf(_tiny("gpt2")).with_overrides({"transformer.block.mixer.head_size": 16})

    with pytest.raises(ConfigError, match=r"mixer.head_size: has no equivalent in a 'gpt2' config.json \(export would give 8\)"):
        config_to_hf(config)


# ---------------------------------------------------------------------- badly typed or invalid config.json


@pytest.mark.parametrize(
    ("model_type", "keys", "message"),
    [
        ("llama", {"num_hidden_layers": "3"}, r"num_hidden_layers: expected an integer, got a string; write the number without quotes \[got '3'\]"),
        ("llama", {"num_hidden_layers": None}, r"num_hidden_layers: expected an integer, got null"),
        ("llama", {"num_hidden_layers": 3.0}, r"num_hidden_layers: expected an integer, got a number"),
        ("llama", {"num_hidden_layers": True}, r"num_hidden_layers: expected an integer, got a boolean"),
        ("llama", {"num_hidden_layers": 0}, r"num_hidden_layers: must be a positive integer \[got 0\]"),
        ("llama", {"num_attention_heads": 0}, r"num_attention_heads: must be a positive integer \[got 0\]"),
        ("llama", {"rms_norm_eps": "abc"}, r"rms_norm_eps: expected a number, got a string"),
        ("llama", {"rms_norm_eps": "1e-6"}, r"rms_norm_eps: expected a number, got a string"),
        ("llama", {"tie_word_embeddings": 1}, r"tie_word_embeddings: expected a boolean, got an integer; write true or false"),
        ("llama", {"hidden_act": 1}, r"hidden_act: expected a string, got an integer"),
        ("llama", {"rope_parameters": "default"}, r"rope_parameters: expected an object or null, got a string"),
        ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": "2"}}, r"rope_parameters.factor: expected a number or null, got a string"),
        ("qwen2", {"layer_types": "full_attention"}, r"layer_types: expected an array or null, got a string"),
        ("gpt2", {"n_head": "4"}, r"n_head: expected an integer, got a string"),
        ("qwen2_moe", {"mlp_only_layers": [1, "2"]}, r"mlp_only_layers\[1\]: expected an integer, got a string"),
        ("gemma2", {"query_pre_attn_scalar": "8", "head_dim": 8}, r"query_pre_attn_scalar: expected a number, got a string"),
    ],
)
def test_badly_typed_value_rejected(model_type, keys, message):
    with pytest.raises(ConfigError, match=message) as error:
        config_from_hf({**_tiny(model_type), **keys})

    assert len(error.value.issues) == 1


def test_integer_accepted_as_number():
    config = config_from_hf({**_tiny("llama"), "rms_norm_eps": 1, "rope_theta": 10000})

    assert config.transformer.block.normalization.epsilon == 1.0
    assert config.transformer.block.mixer.rotary.theta == 10000.0


def test_badly_typed_file_names_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**_tiny("llama"), "num_hidden_layers": "3"}))

    with pytest.raises(ConfigError, match=r"in .*config.json \(model_type llama\): num_hidden_layers"):
        config_from_hf(tmp_path)


def test_truncated_json_names_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_tiny("llama"))[:40])

    with pytest.raises(ConfigError, match=r"in .*config.json: <root>: not valid JSON"):
        config_from_hf(tmp_path)


def test_json_array_rejected(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")

    with pytest.raises(ConfigError, match=r"expected a JSON object, got array"):
        config_from_hf(tmp_path)


def test_validation_error_names_hf_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**_tiny("llama"), "num_key_value_heads": 3}))

    with pytest.raises(ConfigError) as error:
        config_from_hf(tmp_path)

    issue = error.value.issues[0]
    assert issue.path == "num_key_value_heads"
    assert "head_groups must divide heads=4" in issue.message
    assert "blockspec field transformer.block.mixer.head_groups" in issue.message
    assert str(tmp_path / "config.json") in str(error.value)


def test_validation_error_uses_file_spelling():
    with pytest.raises(ConfigError) as error:
        config_from_hf({**_tiny("gpt2"), "n_inner": -1})

    assert error.value.issues[0].path == "n_inner"


def test_odd_head_dim_rejected_on_whole_head_rotary():
    with pytest.raises(ConfigError) as error:
        config_from_hf({**_tiny("llama"), "head_dim": 15})

    assert [issue.path for issue in error.value.issues] == ["head_dim"]
    assert "must be even" in error.value.issues[0].message
    assert "fraction" not in str(error.value)


def test_legacy_rope_type_reported_where_written():
    data = {**_tiny("llama"), "rope_scaling": {"type": "dynamic", "factor": 2.0}}

    with pytest.raises(ConfigError) as error:
        config_from_hf(data)

    assert [issue.path for issue in error.value.issues] == ["rope_scaling.type"]
