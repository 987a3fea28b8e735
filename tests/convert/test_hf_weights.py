"""Hugging Face safetensors import and export, compared with transformers on tiny random models."""

from __future__ import annotations

import json
import logging

import pytest
import torch

transformers = pytest.importorskip("transformers")

import blockspec
from blockspec.convert import config_from_hf, load_hf, save_hf
from blockspec.convert.hf_weights import CheckpointError

VOCAB = 96
COMMON = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2}

# Small windows (shorter than the 28-token sequences) so the window masks are exercised.
MODEL_CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**COMMON, attention_bias=True, rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "mistral": lambda: transformers.MistralConfig(**COMMON, sliding_window=5),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON, use_sliding_window=True, sliding_window=5, max_window_layers=1),
    "qwen3": lambda: transformers.Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True),
    "mixtral": lambda: transformers.MixtralConfig(**COMMON, num_local_experts=4),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(**COMMON, moe_intermediate_size=16, shared_expert_intermediate_size=24, num_experts=4, num_experts_per_tok=2, mlp_only_layers=[1]),
    "gemma2": lambda: transformers.Gemma2Config(**COMMON, head_dim=8, sliding_window=5, query_pre_attn_scalar=8, final_logit_softcapping=30.0, attn_logit_softcapping=20.0),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=1),
    "phi3": lambda: transformers.Phi3Config(**COMMON, sliding_window=5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}, pad_token_id=0, eos_token_id=1),
    "olmo2": lambda: transformers.Olmo2Config(**COMMON, pad_token_id=0, eos_token_id=1),
}


def _randomize(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            # Norm weights stay near their identity value; the rest is large enough to matter.
            if parameter.ndim == 1 and ("norm" in name or "ln_" in name):
                parameter.add_(torch.randn_like(parameter) * 0.1)
            else:
                parameter.normal_(0.0, 0.15)
    return model


def _reference_model(model_type: str, seed: int = 0):
    torch.manual_seed(seed)
    config = MODEL_CONFIGS[model_type]()
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    return _randomize(model)


ROPE_VARIANTS = {
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 16.0},
    "yarn_mscale": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 1024, "mscale": 0.8, "mscale_all_dim": 0.6},
}


@pytest.mark.parametrize("variant", sorted(ROPE_VARIANTS))
def test_load_rope_scaling_matches_transformers(variant, tmp_path):
    torch.manual_seed(0)
    # Heads of 32 dimensions, so the yarn ramp bounds depend on beta_fast and beta_slow.
    config = transformers.LlamaConfig(**COMMON, head_dim=32, max_position_embeddings=4096, rope_parameters=dict(ROPE_VARIANTS[variant]))
    reference = _randomize(transformers.LlamaForCausalLM(config).eval())
    reference.save_pretrained(tmp_path)
    _, model = load_hf(tmp_path, progress=False)
    input_ids = _inputs(length=40)

    with torch.no_grad():
        difference = (model(input_ids).logits - reference(input_ids).logits).abs().max().item()

    assert model.config.transformer.block.mixer.rotary.type_name == ROPE_VARIANTS[variant]["rope_type"]
    assert difference <= 1e-4


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """model_type -> (directory saved by transformers, reference model)."""
    saved = {}
    for model_type in MODEL_CONFIGS:
        directory = tmp_path_factory.mktemp(model_type)
        model = _reference_model(model_type)
        model.save_pretrained(directory)
        saved[model_type] = (directory, model)
    return saved


def _inputs(seed: int = 1, length: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (2, length), generator=generator)


@pytest.mark.parametrize("model_type", sorted(MODEL_CONFIGS))
def test_load_matches_transformers_logits_and_loss(checkpoints, model_type):
    directory, reference = checkpoints[model_type]
    _, model = load_hf(directory, progress=False)
    model.eval()
    input_ids = _inputs(length=28)

    with torch.no_grad():
        expected = reference(input_ids, labels=input_ids)
        actual = model(input_ids, labels=input_ids)

    assert actual.logits.shape == expected.logits.shape
    assert (actual.logits - expected.logits).abs().max().item() <= 1e-4
    # transformers adds no router loss unless output_router_logits is set.
    cross_entropy = actual.loss - sum(actual.aux_losses.values(), torch.tensor(0.0))
    assert cross_entropy.item() == pytest.approx(expected.loss.item(), abs=1e-5)


@pytest.mark.parametrize("model_type", sorted(MODEL_CONFIGS))
def test_load_matches_transformers_greedy_generation(checkpoints, model_type):
    directory, reference = checkpoints[model_type]
    _, model = load_hf(directory, progress=False)
    input_ids = _inputs(seed=2)

    with torch.no_grad():
        expected = reference.generate(input_ids, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0, attention_mask=torch.ones_like(input_ids))
    actual = blockspec.generate(model, input_ids, max_new_tokens=20, temperature=0.0)

    assert actual.shape == (2, 28)
    assert actual.tolist() == expected.tolist()


@pytest.mark.parametrize("model_type", sorted(MODEL_CONFIGS))
def test_save_reloads_identical_in_transformers(checkpoints, model_type, tmp_path):
    directory, reference = checkpoints[model_type]
    _, model = load_hf(directory, progress=False)

    save_hf(model, tmp_path / "exported")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "exported")

    assert type(reloaded) is type(reference)
    expected, actual = reference.state_dict(), reloaded.state_dict()
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


def test_save_then_load_round_trip(checkpoints, tmp_path):
    directory, _ = checkpoints["qwen2_moe"]
    config, model = load_hf(directory, progress=False)

    save_hf(model, tmp_path)
    config_again, model_again = load_hf(tmp_path, progress=False)

    assert config_again == config
    for (name, tensor), (name_again, tensor_again) in zip(model.state_dict().items(), model_again.state_dict().items()):
        assert name == name_again
        assert torch.equal(tensor, tensor_again), name


def test_load_sharded_checkpoint(tmp_path):
    reference = _reference_model("llama")
    reference.save_pretrained(tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    _, model = load_hf(tmp_path, progress=False)
    input_ids = _inputs()

    assert len(set(index["weight_map"].values())) > 1
    with torch.no_grad():
        assert (model(input_ids).logits - reference(input_ids).logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe"])
def test_load_fused_expert_names(model_type, tmp_path):
    from safetensors.torch import save_file

    reference = _reference_model(model_type)
    state = {name: tensor.contiguous() for name, tensor in reference.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(reference.config.to_dict()))
    _, model = load_hf(tmp_path, progress=False)
    input_ids = _inputs()

    assert any(name.endswith("experts.gate_up_proj") for name in state)
    with torch.no_grad():
        assert (model(input_ids).logits - reference(input_ids).logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16"])
def test_load_dtype(checkpoints, dtype):
    _, model = load_hf(checkpoints["llama"][0], dtype=dtype, progress=False)

    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    assert not any(parameter.is_meta for parameter in model.parameters())
    assert not any(buffer.is_meta for buffer in model.buffers())


def test_load_keeps_tied_weights_tied(checkpoints):
    _, model = load_hf(checkpoints["qwen3"][0], progress=False)

    assert model.head.output_weight is model.embeddings.word_weight


def test_load_progress_bar(checkpoints, capsys):
    load_hf(checkpoints["llama"][0], progress=True)

    assert "Loading" in capsys.readouterr().err


def test_load_reports_every_mismatch_at_once(checkpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    directory, _ = checkpoints["llama"]
    state = load_file(str(directory / "model.safetensors"))
    del state["model.layers.1.self_attn.k_proj.weight"]
    state["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    state["model.norm.weight"] = torch.zeros(31)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())

    with pytest.raises(CheckpointError) as error:
        load_hf(tmp_path, progress=False)

    message = str(error.value)
    assert "missing tensors (1): model.layers.1.self_attn.k_proj.weight" in message
    assert "unexpected tensors (1): model.layers.0.self_attn.extra.weight" in message
    assert "model.norm.weight: checkpoint [31], model expects [32]" in message


def test_save_failure_writes_nothing(checkpoints, tmp_path):
    _, model = load_hf(checkpoints["llama"][0], progress=False)
    config = model.config.with_overrides({"head.logits_scale": 2.0})
    target = tmp_path / "out"

    with pytest.raises(blockspec.ConfigError, match=r"head.logits_scale"):
        save_hf(model, target, config=config)

    assert list(tmp_path.iterdir()) == []


def test_save_failure_keeps_existing_directory(checkpoints, tmp_path, monkeypatch):
    import safetensors.torch

    _, model = load_hf(checkpoints["llama"][0], progress=False)
    (tmp_path / "config.json").write_text("old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_hf(model, tmp_path)

    assert [path.name for path in tmp_path.iterdir()] == ["config.json"]
    assert (tmp_path / "config.json").read_text() == "old"


def test_save_replaces_files_in_existing_directory(checkpoints, tmp_path):
    _, model = load_hf(checkpoints["mistral"][0], progress=False)
    (tmp_path / "model.safetensors.index.json").write_text("{}")

    save_hf(model, tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mistral"


def test_save_model_built_from_yaml(tmp_path):
    config = config_from_hf(MODEL_CONFIGS["qwen3"]().to_dict())
    model = config.build(seed=3)

    save_hf(model, tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    input_ids = _inputs()

    with torch.no_grad():
        assert (model(input_ids).logits - reloaded(input_ids).logits).abs().max().item() <= 1e-4


def test_load_bare_decoder_checkpoint(tmp_path):
    reference = _reference_model("qwen3")  # tied, so the bare decoder contains every weight
    reference.model.save_pretrained(tmp_path)
    _, model = load_hf(tmp_path, progress=False)
    input_ids = _inputs()

    with torch.no_grad():
        assert (model(input_ids).logits - reference(input_ids).logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe"])
def test_moe_aux_loss_matches_transformers_one_layer(model_type, tmp_path):
    # With several layers transformers pools the router statistics of all layers before
    # taking the product, but blockspec sums one loss per layer. One layer compares both.
    one_layer = {**COMMON, "num_hidden_layers": 1, "output_router_logits": True, "router_aux_loss_coef": 0.1}
    if model_type == "mixtral":
        config = transformers.MixtralConfig(**one_layer, num_local_experts=4)
    else:
        config = transformers.Qwen2MoeConfig(**one_layer, moe_intermediate_size=16, shared_expert_intermediate_size=24, num_experts=4, num_experts_per_tok=2)
    torch.manual_seed(0)
    reference = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.3)
    reference.save_pretrained(tmp_path)
    _, model = load_hf(tmp_path, progress=False)
    input_ids = _inputs()

    with torch.no_grad():
        expected = reference(input_ids, labels=input_ids)
        actual = model(input_ids, labels=input_ids)

    assert actual.aux_losses["load_balancing"].item() == pytest.approx(0.1 * expected.aux_loss.item(), rel=1e-5)
    assert actual.loss.item() == pytest.approx(expected.loss.item(), rel=1e-5)


def test_load_into_config_with_lora(checkpoints, tmp_path):
    directory, reference = checkpoints["llama"]
    config = config_from_hf(directory).with_overrides({"peft": {"type": "lora", "rank": 4}})

    _, model = load_hf(directory, config, progress=False)
    input_ids = _inputs()
    with torch.no_grad():
        difference = (model(input_ids).logits - reference(input_ids).logits).abs().max().item()
    adapters = {name for name, parameter in model.named_parameters() if "lora" in name}
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}

    assert difference <= 1e-4  # lora_b starts at zero, so the adapters change nothing yet
    assert adapters
    assert trainable == adapters
    assert all(model.get_parameter(name).abs().sum() > 0 for name in adapters if name.endswith("lora_a"))


def test_save_with_lora_adapters_rejected_until_merged(checkpoints, tmp_path):
    directory, reference = checkpoints["llama"]
    config = config_from_hf(directory).with_overrides({"peft": {"type": "lora", "rank": 4}})
    _, model = load_hf(directory, config, progress=False)

    with pytest.raises(CheckpointError, match=r"LoRA adapters .*merge them with blockspec.merge_lora\(model\)"):
        save_hf(model, tmp_path / "adapted")
    blockspec.merge_lora(model)
    save_hf(model, tmp_path / "merged")

    assert not (tmp_path / "adapted").exists()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert torch.equal(reloaded.model.layers[0].self_attn.q_proj.weight, reference.model.layers[0].self_attn.q_proj.weight)


def test_load_into_different_config_warns(checkpoints, caplog):
    directory, _ = checkpoints["llama"]
    config = config_from_hf(directory).with_overrides({"transformer.block.normalization.epsilon": 1e-3})

    with caplog.at_level(logging.WARNING, logger="blockspec.convert.hf_weights"):
        load_hf(directory, config, progress=False)

    assert "config.json: transformer.layers[0].normalization.epsilon: config 0.001, file 1e-06" in caplog.text
    assert [record.name for record in caplog.records] == ["blockspec.convert.hf_weights"]


def test_load_allocates_parameters_one_tensor_at_a_time(checkpoints):
    from blockspec.convert.hf_names import hf_tensor_recipes
    from blockspec.convert.hf_weights import SafetensorsReader, load_tensors

    directory, _ = checkpoints["llama"]
    config = config_from_hf(directory)
    model = config.build(device="meta")
    allocated_at_read = []

    class RecordingReader(SafetensorsReader):
        def get(self, name):
            allocated_at_read.append(sum(not parameter.is_meta for parameter in model.parameters()))
            return super().get(name)

    load_tensors(model, RecordingReader(directory), hf_tensor_recipes(config.resolved, "llama"), progress=False)

    # Before the k-th tensor is read, only the k - 1 parameters already filled have storage.
    assert allocated_at_read == list(range(len(allocated_at_read)))
    assert not any(parameter.is_meta for parameter in model.parameters())


def test_load_unknown_dtype_name_rejected(checkpoints):
    with pytest.raises(ValueError, match=r"unknown dtype 'bfloat15'"):
        load_hf(checkpoints["llama"][0], dtype="bfloat15", progress=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16"])
def test_save_dtype(checkpoints, tmp_path, dtype):
    from safetensors import safe_open

    _, model = load_hf(checkpoints["llama"][0], progress=False)

    save_hf(model, tmp_path / "saved", dtype=dtype)

    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), framework="pt") as file:
        dtypes = {file.get_tensor(name).dtype for name in file.keys()}  # noqa: SIM118 (a safetensors handle is not iterable)
    assert config["dtype"] == "bfloat16"
    assert dtypes == {torch.bfloat16}


def test_load_truncated_safetensors_names_file(checkpoints, tmp_path):
    directory, _ = checkpoints["llama"]
    (tmp_path / "config.json").write_bytes((directory / "config.json").read_bytes())
    data = (directory / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])

    with pytest.raises(CheckpointError, match=r"cannot read .*model.safetensors: .*truncated"):
        load_hf(tmp_path, progress=False)


def test_load_invalid_shard_index_names_file(checkpoints, tmp_path):
    directory, _ = checkpoints["llama"]
    (tmp_path / "config.json").write_bytes((directory / "config.json").read_bytes())
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": ')

    with pytest.raises(CheckpointError, match=r"model.safetensors.index.json is not valid JSON"):
        load_hf(tmp_path, progress=False)


def test_load_badly_typed_config_names_file(checkpoints, tmp_path):
    directory, _ = checkpoints["llama"]
    config = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "rms_norm_eps": "1e-6"}))

    with pytest.raises(blockspec.ConfigError, match=r"config.json \(model_type llama\): rms_norm_eps: expected a number"):
        load_hf(tmp_path, progress=False)


SHARED_YAML = """
type: lm
hidden_size: 32
embeddings: {vocab_size: 96}
transformer:
  num_layers: 4
  blocks:
    first: {mixer: {heads: 4, head_groups: 2, rotary: {type: default, theta: 10000.0}}, mlp: {intermediate_size: 48}}
    shared: {mixer: {heads: 4, head_groups: 2, rotary: {type: default, theta: 10000.0}}, mlp: {intermediate_size: 48}}
  pattern: [first, shared, shared, shared]
  shared_blocks: [shared]
"""


def test_save_shared_blocks_writes_every_layer(tmp_path, caplog):
    model = blockspec.load_config(SHARED_YAML).build(seed=0)

    with caplog.at_level(logging.WARNING, logger="blockspec.convert.hf_weights"):
        save_hf(model, tmp_path / "shared")

    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "shared").eval()
    shared_weight = model.transformer.layers[1].mixer.query.weight
    input_ids = _inputs()
    with torch.no_grad():
        difference = (model(input_ids).logits - reloaded(input_ids).logits).abs().max().item()
    assert "transformer.shared_blocks ['shared']" in caplog.text
    assert "separate copies" in caplog.text
    for index in (1, 2, 3):
        assert torch.equal(reloaded.model.layers[index].self_attn.q_proj.weight, shared_weight)
    assert not torch.equal(reloaded.model.layers[0].self_attn.q_proj.weight, shared_weight)
    assert difference <= 1e-4
