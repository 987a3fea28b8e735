"""Depth-scaled initialization reaches exactly the linears that write into the residual stream."""

from __future__ import annotations

import math

import torch

import blockspec
from blockspec.build import parameter_spec
from blockspec.layers.initialization.config import DepthScaledNormalInitializationConfig

CONFIG = """
type: lm
hidden_size: 256
embeddings: {vocab_size: 64}
transformer:
  num_layers: 8
  blocks:
    dense: {mixer: {heads: 4}, mlp: {type: mlp, intermediate_size: 512}}
    sparse: {mixer: {heads: 4}, mlp: {type: moe, experts: 2, experts_per_token: 1, intermediate_size: 256}}
  pattern: [dense, sparse]
"""

RESIDUAL_OUTPUTS = ("mixer.output.weight", "mlp.down.weight", "mlp.down")


def test_depth_scaling_only_on_residual_outputs():
    model = blockspec.load_config(CONFIG).build(device="meta")
    scaled = []
    for name, parameter in model.named_parameters():
        spec = parameter_spec(parameter)
        if isinstance(spec.initialization, DepthScaledNormalInitializationConfig):
            scaled.append(name)
            assert spec.num_layers == 8, name
    expected = [name for name, _ in model.named_parameters() if name.split("layers.", 1)[-1].split(".", 1)[-1].startswith(RESIDUAL_OUTPUTS)]
    assert scaled == expected
    assert len(scaled) == 16  # attention output and mlp/moe down in each of 8 layers


def test_depth_scaled_std_measured():
    model = blockspec.load_config(CONFIG).build(seed=0)
    weight = model.transformer.layers[0].mlp.down.weight
    expected = 0.02 / math.sqrt(2 * 8)
    assert abs(weight.std().item() - expected) / expected < 0.01
    query = model.transformer.layers[0].mixer.query.weight
    assert abs(query.std().item() - 0.02) / 0.02 < 0.01
    assert torch.isfinite(weight).all()
