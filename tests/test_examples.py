"""The example configs: published parameter counts, round trips and tiny training steps."""

import json
import pathlib

import pytest
import torch

import blockspec

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
HF_CONFIGS = pathlib.Path(__file__).parent / "data" / "hf-configs"

# Counts published on the model cards (Llama 3.1 8B, Mixtral 8x7B, SmolLM2 135M) or computed
# by transformers from the config.json of each model (see test_count_matches_transformers).
EXPECTED_PARAMETERS = {
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.2-1b": 1_235_814_400,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-0.5b": 494_032_768,
    "qwen3-0.6b": 596_049_920,
    "mixtral-8x7b": 46_702_792_704,
    "smollm2-135m": 134_515_008,
    "gpt2-small": 124_439_808,
    "hybrid-sliding-window": 276_071_424,
}

HF_CONFIG_FILES = {
    "llama-3.1-8b": "Llama-3.1-8B.json",
    "llama-3.2-1b": "Llama-3.2-1B.json",
    "mistral-7b": "Mistral-7B-Instruct-v0.1.json",
    "qwen2.5-0.5b": "Qwen2.5-0.5B.json",
    "qwen3-0.6b": "Qwen3-0.6B.json",
    "mixtral-8x7b": "Mixtral-8x7B-Instruct-v0.1.json",
    "smollm2-135m": "SmolLM2-135M-Instruct.json",
    "gpt2-small": "gpt2.json",
}

NAMES = sorted(path.stem for path in EXAMPLES.glob("*.yaml"))


def load(name):
    return blockspec.load_config(EXAMPLES / f"{name}.yaml")


def test_every_example_has_expected_count():
    assert sorted(EXPECTED_PARAMETERS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_example_num_parameters(name):
    assert load(name).num_parameters() == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", NAMES)
def test_example_meta_build_count(name):
    model = load(name).build(device="meta")
    assert sum(parameter.numel() for parameter in model.parameters()) == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(HF_CONFIG_FILES))
def test_count_matches_transformers(name):
    transformers = pytest.importorskip("transformers")
    path = HF_CONFIGS / HF_CONFIG_FILES[name]
    if not path.exists():
        pytest.skip(f"reference config.json not found: {path}")
    data = json.loads(path.read_text())
    config = transformers.AutoConfig.for_model(**data)
    with torch.device("meta"):
        reference = transformers.AutoModelForCausalLM.from_config(config)
    # parameters() yields a tied weight once, as num_parameters() counts it.
    count = sum(parameter.numel() for parameter in reference.parameters())
    assert count == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", NAMES)
def test_example_has_source_header(name):
    first = (EXAMPLES / f"{name}.yaml").read_text().splitlines()[0]
    assert first.startswith("# ")


@pytest.mark.parametrize("name", NAMES)
def test_example_round_trip(name):
    config = load(name)
    assert blockspec.load_config(config.to_yaml()) == config
    resolved_text = config.to_yaml(resolved=True)
    assert blockspec.load_config(resolved_text).resolved == config.resolved
    assert blockspec.load_config(resolved_text).num_parameters() == config.num_parameters()


def tiny(config):
    """Return `config` shrunk to hidden size 32, 64 tokens and the fewest layers its pattern allows."""
    transformer = config.transformer
    overrides = {
        "hidden_size": 32,
        "embeddings.vocab_size": 64,
        "transformer.num_layers": len(transformer.pattern) if transformer.pattern else 2,
    }
    if config.embeddings.position_embeddings is not None:
        overrides["embeddings.position_embeddings"] = 16
    prefixes = ["transformer.block"] if transformer.block is not None else [f"transformer.blocks.{name}" for name in transformer.blocks]
    for prefix in prefixes:
        block = transformer.block if transformer.block is not None else transformer.blocks[prefix.split(".")[-1]]
        overrides[f"{prefix}.mixer.heads"] = 4
        overrides[f"{prefix}.mixer.head_size"] = 8
        if block.mixer.head_groups is not None:
            overrides[f"{prefix}.mixer.head_groups"] = 2
        overrides[f"{prefix}.mlp.intermediate_size"] = 48
        if block.mlp.type_name == "moe":
            overrides[f"{prefix}.mlp.experts"] = 4
    return config.with_overrides(overrides)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_example_trains(name):
    config = tiny(load(name))
    assert config.num_parameters() < 200_000
    model = config.build(seed=0)
    assert sum(parameter.numel() for parameter in model.parameters()) == config.num_parameters()

    input_ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    output = model(input_ids, labels=input_ids)
    assert output.logits.shape == (2, 10, 64)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


def test_tiny_mixtral_reports_aux_loss():
    model = tiny(load("mixtral-8x7b")).build(seed=0)
    input_ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    output = model(input_ids, labels=input_ids)
    assert set(output.aux_losses) == {"load_balancing"}
    assert output.aux_losses["load_balancing"] > 0
    cross_entropy = torch.nn.functional.cross_entropy(output.logits[:, :-1].reshape(-1, 64), input_ids[:, 1:].reshape(-1))
    torch.testing.assert_close(output.loss, cross_entropy + output.aux_losses["load_balancing"])


def test_hybrid_layer_windows():
    config = load("hybrid-sliding-window")
    windows = [layer.mixer.window_size for layer in config.transformer.layer_configs()]
    assert windows == [None, 1024, 1024, None] + [1024, 1024, 1024, None] * 3


def test_hybrid_global_layers_share_theta():
    config = load("hybrid-sliding-window")
    layers = config.transformer.layer_configs()

    for index, layer in enumerate(layers):
        expected = 10_000.0 if layer.mixer.window_size is not None else 1_000_000.0
        assert layer.mixer.rotary.theta == expected, f"layer {index}"

