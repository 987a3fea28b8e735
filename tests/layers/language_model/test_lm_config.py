"""Validation of a whole lm config against its hidden size."""

import pytest

import blockspec
from blockspec import ConfigError



WIDTH_TEMPLATE = """
type: lm
hidden_size: 64
embeddings: {vocab_size: 100}
transformer:
  num_layers: 4
  %s
"""


def test_lm_rejects_heads_not_dividing_hidden_size():
    text = WIDTH_TEMPLATE % "block: {mixer: {heads: 5}, mlp: {intermediate_size: 128}}"
    with pytest.raises(ConfigError, match=r"transformer\.block\.mixer\.head_size \(<string>:7\): head_size is unset and hidden_size=64 is not divisible by heads=5"):
        blockspec.load_config(text)


def test_lm_rejects_odd_rotary_width_in_named_block():
    text = WIDTH_TEMPLATE % (
        "blocks: {a: {mixer: {heads: 4}, mlp: {intermediate_size: 8}},"
        " b: {mixer: {heads: 4, rotary: {type: default, fraction: 0.2}}, mlp: {intermediate_size: 8}}}\n"
        "  pattern: [a, b]"
    )
    with pytest.raises(ConfigError, match=r"transformer\.blocks\.b\.mixer\.rotary\.fraction.*must be even"):
        blockspec.load_config(text)


def test_lm_rejects_override_breaking_width():
    text = WIDTH_TEMPLATE % (
        "block: {mixer: {heads: 4}, mlp: {intermediate_size: 8}}\n"
        "  overrides: [{layers: 3, set: {mixer.heads: 3}}]"
    )
    with pytest.raises(ConfigError, match=r"transformer\.overrides\[0\]\.set\.mixer\.head_size.*heads=3"):
        blockspec.load_config(text)


def test_lm_accepts_explicit_head_size():
    text = WIDTH_TEMPLATE % "block: {mixer: {heads: 5, head_size: 16}, mlp: {intermediate_size: 128}}"
    assert blockspec.load_config(text).transformer.block.mixer.head_size == 16


LORA_TEMPLATE = """
type: lm
hidden_size: 32
embeddings: {vocab_size: 50}
peft: {type: lora, rank: 4}
transformer:
  num_layers: 4
  blocks:
    dense:
      mixer: {heads: 4, head_groups: 2, add_linear_biases: true}
      mlp: %s
    experts:
      mixer: {heads: 4, key: {apply_peft: true}, output: {apply_peft: true}}
      mlp:
        type: moe
        experts: 4
        experts_per_token: 2
        intermediate_size: 16
        shared_expert_intermediate_size: 24
        shared_expert_gate: true
        router: {apply_peft: true}
  pattern: [dense, experts]
  shared_blocks: [experts]
"""

DENSE_MLP_DEFAULT = "{intermediate_size: 64}"
DENSE_MLP_ADAPTED = "{intermediate_size: 64, gate: {apply_peft: true}, up: {apply_peft: true}, down: {apply_peft: true, bias: true}}"


@pytest.mark.parametrize("mlp", [DENSE_MLP_DEFAULT, DENSE_MLP_ADAPTED], ids=["attention_defaults", "mlp_adapted"])
def test_lm_num_parameters_counts_lora(mlp):
    config = blockspec.load_config(LORA_TEMPLATE % mlp)
    model = config.build(device="meta")
    adapters = [name for name, _ in model.named_parameters() if "lora_" in name]

    assert config.num_parameters() == sum(parameter.numel() for parameter in model.parameters())
    assert adapters


def test_lm_num_parameters_lora_default_targets():
    lora = blockspec.load_config(LORA_TEMPLATE % DENSE_MLP_DEFAULT)
    base = blockspec.load_config((LORA_TEMPLATE % DENSE_MLP_DEFAULT).replace("peft: {type: lora, rank: 4}", ""))
    # Layers 0 and 2 (dense) adapt query and value: 32 -> 32 and 32 -> 16 (2 kv heads of 8).
    dense_adapters = 2 * 4 * ((32 + 32) + (32 + 16))
    # The shared block counts once: query, key, value and output (32 -> 32 each) plus the router (32 -> 4).
    shared_adapters = 4 * (4 * (32 + 32) + (32 + 4))

    assert lora.num_parameters() - base.num_parameters() == dense_adapters + shared_adapters


def test_lm_resolved_shows_head_layout():
    config = blockspec.load_config(WIDTH_TEMPLATE % "block: {mixer: {heads: 4}, mlp: {intermediate_size: 8}}")
    mixer = config.transformer.block.mixer
    assert mixer.head_size is None
    assert mixer.resolved.head_size == 16
    assert mixer.resolved.head_groups == 4
    assert "head_size" not in config.to_dict()["transformer"]["block"]["mixer"]
    assert config.to_dict(resolved=True)["transformer"]["block"]["mixer"]["head_size"] == 16


def test_lm_resolved_head_layout_round_trips():
    config = blockspec.load_config(WIDTH_TEMPLATE % "block: {mixer: {heads: 4, head_groups: 2}, mlp: {intermediate_size: 8}}")
    reloaded = blockspec.load_config(config.to_yaml(resolved=True))
    assert reloaded == config.resolved
    assert reloaded.transformer.block.mixer.head_groups == 2


def test_lm_reports_pattern_and_shared_block_errors_together():
    text = WIDTH_TEMPLATE % (
        "blocks: {a: {mixer: {heads: 4}, mlp: {intermediate_size: 8}}}\n"
        "  pattern: [a, b]\n"
        "  shared_blocks: [c]"
    )
    with pytest.raises(ConfigError) as raised:
        blockspec.load_config(text)
    paths = [issue.path for issue in raised.value.issues]
    assert paths == ["transformer.pattern[1]", "transformer.shared_blocks[0]"]
    assert "Defined: a" in raised.value.issues[1].message


def test_lm_reports_every_bad_override_together():
    text = WIDTH_TEMPLATE % (
        "block: {mixer: {heads: 4}, mlp: {intermediate_size: 8}}\n"
        "  overrides:\n"
        "    - {layers: '::0', set: {mixer.heads: 2}}\n"
        "    - {layers: [1, 9], set: {mlp.intermediate_size: 4}}\n"
        "    - {layers: 2, set: {mixer.window_sise: 4}}"
    )
    with pytest.raises(ConfigError) as raised:
        blockspec.load_config(text)
    paths = [issue.path for issue in raised.value.issues]
    assert paths == [
        "transformer.overrides[0].layers",
        "transformer.overrides[1].layers",
        "transformer.overrides[2].set.mixer.window_sise",
    ]


def test_override_of_shortcut_rejected_with_fields():
    text = WIDTH_TEMPLATE % (
        "block: {mixer: {heads: 4, add_linear_biases: true}, mlp: {intermediate_size: 8}}\n"
        "  overrides: [{layers: 1, set: {mixer.add_linear_biases: false}}]"
    )
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.set\.mixer\.add_linear_biases.*set the fields it stands for instead: mixer\.query\.bias, mixer\.key\.bias"):
        blockspec.load_config(text)


@pytest.mark.parametrize(
    "override",
    [
        "{layers: 1, set: {mixer.heads: 2}}",
        "{layers: '1:', set: {mixer.query.bias: false, mixer.query.weight_initialization: {type: normal, std: 0.01}}}",
    ],
)
def test_overridden_layers_build_as_validated(override):
    text = WIDTH_TEMPLATE % (
        "block: {mixer: {heads: 4, add_linear_biases: true, init_std: 0.05}, mlp: {intermediate_size: 8}}\n"
        f"  overrides: [{override}]"
    )
    config = blockspec.load_config(text)
    model = config.build(seed=0)
    assert sum(parameter.numel() for parameter in model.parameters()) == config.num_parameters()
    for layer, layer_config in zip(model.transformer.layers, config.transformer.layer_configs()):
        mixer = layer_config.mixer.resolved
        assert (layer.mixer.query.bias is not None) == mixer.query.bias
        assert layer.mixer.query.weight.shape[0] == mixer.heads * mixer.head_size_for(64)

    reloaded = blockspec.load_config(config.to_yaml(resolved=True))
    assert reloaded == config.resolved
    assert sum(parameter.numel() for parameter in reloaded.build().parameters()) == config.num_parameters()


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ("2.0", r"layers \(<string>:\d+\): Input should be a valid integer, or a valid list, or a valid string \[got 2\.0\]"),
        ("[1.5]", r"layers \(<string>:\d+\): Input should be a valid integer, or list\[int\] with \[0\] a valid integer"),
    ],
)
def test_override_layers_type_error_is_one_issue(layers, expected):
    text = WIDTH_TEMPLATE % (
        "block: {mixer: {heads: 4}, mlp: {intermediate_size: 8}}\n"
        f"  overrides: [{{layers: {layers}, set: {{mixer.heads: 2}}}}]"
    )
    with pytest.raises(ConfigError, match=expected) as raised:
        blockspec.load_config(text)
    assert [issue.path for issue in raised.value.issues] == ["transformer.overrides[0].layers"]
