"""A third-party mixer, defined the way docs/extending.md shows, builds and trains in an lm."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

import blockspec
from blockspec import LinearConfig, MixerConfig, PeftConfig, register_module
from blockspec.build import new_parameter, parameter_spec
from blockspec.generation import mixers_without_kv_cache
from blockspec.layers.initialization.config import NormalInitializationConfig
from blockspec.layers.linear.module import Linear


class ShortConvolutionConfig(MixerConfig, type_name="test_short_convolution"):
    """A causal depthwise convolution over the sequence, then a linear output."""

    kernel_size: int = Field(4, gt=0)
    """Number of tokens each output sees, the current one included."""
    output: LinearConfig = LinearConfig()
    """Projection back to the hidden size."""

    def num_parameters(self, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
        output = self.output.num_parameters(in_features=hidden_size, out_features=hidden_size, peft=peft)
        return hidden_size * self.kernel_size + output


@register_module(ShortConvolutionConfig)
class ShortConvolution(nn.Module):
    def __init__(self, config, *, hidden_size, layer_index=0, num_layers=1, lr_scale=1.0, peft=None):
        super().__init__()
        self.kernel_size = config.kernel_size
        self.kernel = new_parameter(
            (hidden_size, config.kernel_size),
            initialization=NormalInitializationConfig(std=0.02),
            lr_scale=lr_scale,
            weight_decay=True,
        )
        self.output = Linear(config.output, hidden_size, hidden_size, lr_scale=lr_scale, peft=peft, num_layers=num_layers)

    def forward(self, x, *, positions, cache=None):
        padded = nn.functional.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))
        mixed = nn.functional.conv1d(padded, self.kernel.unsqueeze(1), groups=x.shape[-1])
        return self.output(mixed.transpose(1, 2))


CONFIG = """
type: lm
hidden_size: 32
embeddings: {vocab_size: 50}
transformer:
  num_layers: 4
  lr_scale: 0.5
  blocks:
    conv: {mixer: {type: test_short_convolution, kernel_size: 3}, mlp: {intermediate_size: 64}}
    attention: {mixer: {type: attention, heads: 4}, mlp: {intermediate_size: 64}}
  pattern: [conv, conv, conv, attention]
"""


def test_plugin_mixer_builds_in_pattern():
    config = blockspec.load_config(CONFIG)
    model = config.build(seed=0)
    layers = list(model.transformer.layers)
    assert [type(layer.mixer).__name__ for layer in layers] == ["ShortConvolution"] * 3 + ["Attention"]
    assert sum(parameter.numel() for parameter in model.parameters()) == config.num_parameters()


def test_plugin_mixer_counts_lora_adapters():
    text = CONFIG.replace("kernel_size: 3}", "kernel_size: 3, output: {apply_peft: true}}") + "peft: {type: lora, rank: 2}\n"
    config = blockspec.load_config(text)
    model = config.build(device="meta")

    assert model.transformer.layers[0].mixer.output.lora_a is not None
    assert sum(parameter.numel() for parameter in model.parameters()) == config.num_parameters()


def test_plugin_mixer_trains_and_is_causal():
    model = blockspec.load_config(CONFIG).build(seed=0)
    input_ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    output = model(input_ids, labels=input_ids)
    output.loss.backward()
    kernel = model.transformer.layers[0].mixer.kernel
    assert kernel.grad is not None
    assert parameter_spec(kernel).lr_scale == 0.5

    changed = input_ids.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 50
    with torch.no_grad():
        before = model(input_ids).logits
        after = model(changed).logits
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5], after[:, 5])


def test_plugin_mixer_round_trips():
    config = blockspec.load_config(CONFIG)
    assert blockspec.load_config(config.to_yaml()) == config
    assert config.to_dict()["transformer"]["blocks"]["conv"]["mixer"] == {"type": "test_short_convolution", "kernel_size": 3}


def test_plugin_mixer_generates_like_full_forwards(caplog):
    model = blockspec.load_config(CONFIG).build(seed=0).eval()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    input_ids = torch.randint(0, 50, (2, 4), generator=torch.Generator().manual_seed(1))
    expected = input_ids
    with torch.no_grad():
        for _ in range(10):
            next_tokens = model(expected).logits[:, -1].argmax(dim=-1)
            expected = torch.cat((expected, next_tokens[:, None]), dim=1)
    lengths = []
    model.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))

    with caplog.at_level("WARNING", logger="blockspec.generation"):
        actual = blockspec.generate(model, input_ids, max_new_tokens=10, temperature=0)

    assert torch.equal(actual, expected)
    assert lengths == list(range(4, 14))  # the whole sequence at every step
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "ShortConvolution" in caplog.records[0].getMessage()
    assert mixers_without_kv_cache(model) == ["ShortConvolution"]


def test_plugin_module_file_loaded_only_at_build(monkeypatch, tmp_path):
    from importlib.metadata import EntryPoint

    import blockspec.build
    from blockspec.config import registry

    (tmp_path / "scale_plugin_config.py").write_text(
        "from blockspec import FeedForwardConfig\n"
        "class ScaleConfig(FeedForwardConfig, type_name='test_scale'):\n"
        "    factor: float = 2.0\n"
        "    def num_parameters(self, *, hidden_size, peft=None):\n"
        "        return 0\n"
    )
    (tmp_path / "scale_plugin_module.py").write_text(
        "import torch\n"
        "from blockspec import register_module\n"
        "from scale_plugin_config import ScaleConfig\n"
        "@register_module(ScaleConfig)\n"
        "class Scale(torch.nn.Module):\n"
        "    def __init__(self, config, *, hidden_size, layer_index=0, num_layers=1, lr_scale=1.0, peft=None):\n"
        "        super().__init__()\n"
        "        self.factor = config.factor\n"
        "    def forward(self, x):\n"
        "        return x * self.factor\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_points = {
        "blockspec.plugins": [EntryPoint(name="scale", value="scale_plugin_config", group="blockspec.plugins")],
        "blockspec.modules": [EntryPoint(name="scale", value="scale_plugin_module", group="blockspec.modules")],
    }
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: entry_points.get(group, []))
    monkeypatch.setattr(registry, "_loaded_entry_points", set())
    monkeypatch.setattr(blockspec.build, "_modules_imported", False)

    config = blockspec.load_config(CONFIG.replace("{intermediate_size: 64}", "{type: test_scale}"))
    import sys

    assert "scale_plugin_config" in sys.modules
    assert "scale_plugin_module" not in sys.modules

    model = config.build(seed=0)
    assert type(model.transformer.layers[0].mlp).__name__ == "Scale"
    assert sum(parameter.numel() for parameter in model.parameters()) == config.num_parameters()
