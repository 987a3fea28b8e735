import pytest
import torch

import blockspec
from blockspec import LoraConfig
from blockspec.build import build_module
from blockspec.layers.block.config import (
    LayerOverrideConfig,
    RepeatSequenceConfig,
    TransformerBlockConfig,
)
from blockspec.layers.counting import count_parameters

HIDDEN = 16


def block(window_size=None, **fields):
    mixer = {"heads": 4, "head_groups": 2, "rotary": {"type": "default"}}
    if window_size is not None:
        mixer["window_size"] = window_size
    return {"mixer": mixer, "mlp": {"intermediate_size": 24}, **fields}


def sequence(**fields):
    return RepeatSequenceConfig.from_dict(fields)


def hybrid(**fields):
    return sequence(
        num_layers=8,
        blocks={"local": block(window_size=4), "global": block()},
        pattern=["local", "local", "global", "global"],
        **fields,
    )


def build(config, seed=0, **build_args):
    with torch.device("meta"):
        module = build_module(config.resolved, hidden_size=HIDDEN, **build_args)
    return blockspec.materialize(module, device="cpu", seed=seed)


def windows(config):
    return [layer.mixer.window_size for layer in config.layer_configs()]


# --- pattern and overrides -------------------------------------------------------------


def test_pattern_tiles_layers():
    config = hybrid()
    assert config.layer_block_names() == ["local", "local", "global", "global"] * 2
    assert windows(config) == [4, 4, None, None, 4, 4, None, None]


def test_single_block_every_layer():
    config = sequence(num_layers=3, block=block(window_size=2))
    assert config.layer_block_names() == [None, None, None]
    assert windows(config) == [2, 2, 2]


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (0, [None, 8, 8, 8, 8, 8, 8, 8]),
        (-1, [8, 8, 8, 8, 8, 8, 8, None]),
        ([1, 5], [8, None, 8, 8, 8, None, 8, 8]),
        ("::4", [None, 8, 8, 8, None, 8, 8, 8]),
        ("1:8:3", [8, None, 8, 8, None, 8, 8, None]),
        ("6:", [8, 8, 8, 8, 8, 8, None, None]),
        (":-6", [None, None, 8, 8, 8, 8, 8, 8]),
    ],
)
def test_override_layer_selection(layers, expected):
    config = sequence(num_layers=8, block=block(window_size=8), overrides=[{"layers": layers, "set": {"mixer.window_size": None}}])
    assert windows(config) == expected


def test_later_override_wins():
    config = sequence(
        num_layers=4,
        block=block(window_size=8),
        overrides=[
            {"layers": "::2", "set": {"mixer.window_size": 2}},
            {"layers": [2, 3], "set": {"mixer.window_size": 3, "mlp.intermediate_size": 32}},
        ],
    )
    assert windows(config) == [2, 8, 3, 3]
    assert [layer.mlp.intermediate_size for layer in config.layer_configs()] == [24, 24, 32, 32]


def test_override_can_change_type():
    moe = {"type": "moe", "experts": 4, "experts_per_token": 2, "intermediate_size": 8}
    config = sequence(num_layers=4, block=block(), overrides=[{"layers": "1::2", "set": {"mlp": moe}}])
    assert [layer.mlp.type_name for layer in config.layer_configs()] == ["mlp", "moe", "mlp", "moe"]


def test_layer_configs_reuse_equal_layers():
    configs = hybrid(overrides=[{"layers": 0, "set": {"mixer.window_size": 2}}]).layer_configs()
    assert configs[1] is configs[4]
    assert configs[2] is configs[7]
    assert configs[0] is not configs[1]


def test_override_slice_parsing():
    override = LayerOverrideConfig.from_dict({"layers": " 1 : : 2 ", "set": {"dropout": 0.1}})
    assert override.layer_indices(6) == [1, 3, 5]


# --- rejection -------------------------------------------------------------------------


def rejected(match, **fields):
    with pytest.raises(blockspec.ConfigError, match=match):
        sequence(**fields)


def test_pattern_not_dividing_layers_rejected():
    rejected(
        r"pattern: the pattern length 3 must divide num_layers=8",
        num_layers=8,
        blocks={"a": block(), "b": block()},
        pattern=["a", "a", "b"],
    )


def test_pattern_undefined_name_rejected():
    rejected(
        r"pattern\[1\]: no block named 'globl' in `blocks`\. Did you mean 'global'\? Defined: local, global",
        num_layers=4,
        blocks={"local": block(), "global": block()},
        pattern=["local", "globl"],
    )


def test_unused_block_rejected():
    rejected(
        r"blocks\.spare: block 'spare' is not used in pattern \['a'\]",
        num_layers=2,
        blocks={"a": block(), "spare": block()},
        pattern=["a"],
    )


def test_block_and_blocks_rejected():
    rejected(r"blocks: set either `block` or `blocks`", num_layers=2, block=block(), blocks={"a": block()}, pattern=["a"])


def test_no_block_rejected():
    rejected(r"block: set `block` \(one block for every layer\) or `blocks`", num_layers=2)


def test_blocks_without_pattern_rejected():
    rejected(r"pattern: a list of block names is required with `blocks`, e\.g\. \['a'\]", num_layers=2, blocks={"a": block()})


def test_pattern_with_single_block_rejected():
    rejected(r"pattern: a pattern names entries of `blocks`", num_layers=2, block=block(), pattern=["a"])


def test_override_unknown_path_rejected():
    rejected(
        r"overrides\[0\]\.set\.mixer\.window_sise: override key does not exist.*Did you mean 'mixer\.window_size'\?",
        num_layers=2,
        block=block(),
        overrides=[{"layers": 0, "set": {"mixer.window_sise": 4}}],
    )


def test_override_invalid_value_rejected():
    rejected(
        r"overrides\[0\]\.set\.mixer\.window_size: Input should be greater than 0 \[got -4\]",
        num_layers=2,
        block=block(),
        overrides=[{"layers": 1, "set": {"mixer.window_size": -4}}],
    )


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        (2, r"overrides\[0\]\.layers: layer index 2 is outside the sequence of 2 layers \(valid: 0 to 1\)"),
        ([0, -3], r"overrides\[0\]\.layers: layer index -3 is outside the sequence of 2 layers"),
        ("::0", r"overrides\[0\]\.layers: slice step must not be 0"),
        ("every other", r"overrides\[0\]\.layers: a string must be a slice start:stop\[:step\]"),
    ],
)
def test_override_invalid_layers_rejected(layers, match):
    rejected(match, num_layers=2, block=block(), overrides=[{"layers": layers, "set": {"dropout": 0.1}}])


def test_override_empty_set_rejected():
    rejected(r"overrides\[0\]\.set: an override needs at least one dotted path", num_layers=2, block=block(), overrides=[{"layers": 0, "set": {}}])


def test_override_of_shared_block_rejected():
    rejected(
        r"overrides\[0\]\.layers: layer 2 uses shared block 'a'",
        num_layers=4,
        blocks={"a": block(), "b": block()},
        pattern=["a", "b"],
        shared_blocks=["a"],
        overrides=[{"layers": 2, "set": {"dropout": 0.1}}],
    )


def test_shared_unknown_block_rejected():
    rejected(
        r"shared_blocks\[0\]: no block named 'x'",
        num_layers=2,
        blocks={"a": block()},
        pattern=["a"],
        shared_blocks=["x"],
    )


def test_shared_with_single_block_rejected():
    rejected(r"shared_blocks: shared_blocks names entries of `blocks`", num_layers=2, block=block(), shared_blocks=["block"])


def test_error_path_inside_model():
    with pytest.raises(blockspec.ConfigError, match=r"transformer\.pattern\[0\]: no block named 'b'"):
        blockspec.load_config(
            {"hidden_size": 16, "embeddings": {"vocab_size": 10}, "transformer": {"num_layers": 2, "blocks": {"a": block()}, "pattern": ["b"]}}
        )


# --- shortcuts, counts and round trip --------------------------------------------------


def test_shortcuts_reach_every_named_block():
    config = sequence(num_layers=2, blocks={"a": block(), "b": block(add_linear_biases=False)}, pattern=["a", "b"], add_linear_biases=True, init_std=0.05)
    assert config.blocks["a"].mixer.query.bias is True
    assert config.blocks["a"].mlp.down.bias is True
    assert config.blocks["b"].mixer.query.bias is False
    assert config.blocks["b"].mlp.up.weight_initialization.std == 0.05
    assert config.blocks["a"].mixer.output.weight_initialization.type_name == "depth_scaled_normal"


def test_block_num_parameters_with_post_norms():
    config = TransformerBlockConfig.from_dict(block(post_mixer_normalization={"type": "rms_norm"}, post_mlp_normalization={"type": "layer_norm"}))
    attention = HIDDEN * (4 * 4) + 2 * HIDDEN * (2 * 4) + (4 * 4) * HIDDEN
    mlp = 3 * HIDDEN * 24
    norms = 2 * HIDDEN + HIDDEN + 2 * HIDDEN
    assert config.num_parameters(hidden_size=HIDDEN) == attention + mlp + norms
    assert sum(parameter.numel() for parameter in build(config).parameters()) == attention + mlp + norms


class CounterWithoutPeft:
    """A plugin config whose num_parameters predates the peft keyword."""

    def num_parameters(self, *, hidden_size):
        return 3 * hidden_size


def test_count_parameters_without_peft_keyword():
    assert count_parameters(CounterWithoutPeft(), hidden_size=HIDDEN, peft=LoraConfig(rank=2)) == 3 * HIDDEN


def test_block_num_parameters_with_lora():
    config = TransformerBlockConfig.from_dict(block())
    lora = LoraConfig(rank=2)
    # Query (16 -> 16) and value (16 -> 8, two kv heads of 4) are adapted by default.
    adapters = 2 * (HIDDEN + 16) + 2 * (HIDDEN + 8)

    assert config.num_parameters(hidden_size=HIDDEN, peft=lora) == config.num_parameters(hidden_size=HIDDEN) + adapters
    assert sum(parameter.numel() for parameter in build(config, peft=lora).parameters()) == config.num_parameters(hidden_size=HIDDEN, peft=lora)


def test_sequence_round_trip():
    config = hybrid(overrides=[{"layers": "::4", "set": {"mixer.window_size": None}}], shared_blocks=["global"])
    assert RepeatSequenceConfig.from_yaml(config.to_yaml()) == config
    assert RepeatSequenceConfig.from_yaml(config.to_yaml(resolved=True)).resolved == config.resolved
    assert config.resolved.layer_configs() == [layer.resolved for layer in config.layer_configs()]


# --- modules ---------------------------------------------------------------------------


def test_shared_blocks_one_module():
    config = hybrid(shared_blocks=["global"])
    model = build(config)
    layers = model.layers
    assert layers[2] is layers[3] is layers[6] is layers[7]
    assert layers[2].mixer.query.weight is layers[7].mixer.query.weight
    assert layers[0] is not layers[1]
    assert sum(parameter.numel() for parameter in model.parameters()) == config.num_parameters(hidden_size=HIDDEN)
    assert config.num_parameters(hidden_size=HIDDEN) == 5 * TransformerBlockConfig.from_dict(block()).num_parameters(hidden_size=HIDDEN)


def test_layers_get_overridden_configs():
    config = hybrid(overrides=[{"layers": 0, "set": {"mixer.window_size": 2}}])
    model = build(config)
    assert [layer.mixer.config.window_size for layer in model.layers] == [2, 4, None, None, 4, 4, None, None]
    assert [layer.layer_index for layer in model.layers] == list(range(8))


def test_sequence_hidden_size_wins():
    config = sequence(num_layers=1, block=block(), hidden_size=8)
    with torch.device("meta"):
        model = build_module(config.resolved, hidden_size=HIDDEN)
    assert model.layers[0].mixer.query.weight.shape == (8, 8)
    assert model.layers[0].mlp.up.weight.shape == (24, 8)


def test_block_forward_wiring():
    config = TransformerBlockConfig.from_dict(block(post_mixer_normalization={"type": "rms_norm"}, post_mlp_normalization={"type": "rms_norm"}))
    module = build(config, seed=1)
    with torch.no_grad():
        for norm in (module.post_mixer_normalization, module.post_mlp_normalization):
            norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, HIDDEN)
    positions = torch.arange(5)
    middle = x + module.post_mixer_normalization(module.mixer(module.mixer_normalization(x), positions=positions))
    expected = middle + module.post_mlp_normalization(module.mlp(module.mlp_normalization(middle)))
    torch.testing.assert_close(module(x, positions=positions), expected)
    assert module.mixer_normalization is not module.mlp_normalization


def test_block_full_precision_residual():
    config = TransformerBlockConfig.from_dict(block())
    module = build(config, full_precision_residual=True).to(torch.bfloat16)
    x = torch.randn(1, 4, HIDDEN)
    output = module(x, positions=torch.arange(4))
    assert output.dtype == torch.float32
    low_precision = build(config).to(torch.bfloat16)(x.bfloat16(), positions=torch.arange(4))
    assert low_precision.dtype == torch.bfloat16
    torch.testing.assert_close(output, low_precision.float(), atol=0.1, rtol=0.05)


def test_sequence_lr_scale_reaches_linears():
    config = sequence(num_layers=2, block=block(lr_scale=0.5, mlp={"intermediate_size": 8, "lr_scale": 0.1}), lr_scale=2.0)
    model = build(config, lr_scale=3.0)
    spec = blockspec.build.parameter_spec
    assert spec(model.layers[0].mixer.query.weight).lr_scale == pytest.approx(3.0)
    assert spec(model.layers[1].mlp.up.weight).lr_scale == pytest.approx(0.3)
    assert spec(model.layers[1].mlp_normalization.weight).lr_scale == pytest.approx(3.0)
