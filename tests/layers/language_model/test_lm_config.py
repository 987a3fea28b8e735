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
    with pytest.raises(ConfigError, match=r"transformer\.overrides\.mixer\.head_size.*heads=3"):
        blockspec.load_config(text)


def test_lm_accepts_explicit_head_size():
    text = WIDTH_TEMPLATE % "block: {mixer: {heads: 5, head_size: 16}, mlp: {intermediate_size: 128}}"
    assert blockspec.load_config(text).transformer.block.mixer.head_size == 16
