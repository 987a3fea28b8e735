"""Tests of generation: KV-cache decoding against full forwards, sampling, eos, rolling caches."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from blockspec import AttentionConfig, load_config
from blockspec.build import materialize
from blockspec.generation import (
    KVCache,
    LayerKVCache,
    _keep_top_k,
    _keep_top_p,
    generate,
    mixers_without_kv_cache,
)
from blockspec.layers.attention.module import Attention

VOCAB_SIZE = 50
HIDDEN_SIZE = 32


@dataclass
class Output:
    logits: torch.Tensor


class TinyModel(nn.Module):
    """Embedding -> residual attention layers -> linear head, with the language model's forward contract."""

    def __init__(self, attention_configs: list[dict], seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embedding = nn.Embedding(VOCAB_SIZE, HIDDEN_SIZE)
        self.layers = nn.ModuleList()
        for index, fields in enumerate(attention_configs):
            config = AttentionConfig.from_dict(fields).resolved
            with torch.device("meta"):
                layer = Attention(config, hidden_size=HIDDEN_SIZE, layer_index=index, num_layers=len(attention_configs))
            self.layers.append(materialize(layer, seed=seed + index))
        self.head = nn.Linear(HIDDEN_SIZE, VOCAB_SIZE, bias=False)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, input_ids: torch.Tensor, *, cache: KVCache | None = None) -> Output:
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + input_ids.shape[1])
        x = self.embedding(input_ids)
        for layer in self.layers:
            x = x + layer(x, positions=positions, cache=cache)
        return Output(logits=self.head(x))


def greedy_without_cache(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Generate greedily by running the whole sequence through the model at every step."""
    sequences = input_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_tokens = model(sequences).logits[:, -1].argmax(dim=-1)
            sequences = torch.cat((sequences, next_tokens[:, None]), dim=1)
    return sequences


ROTARY = {"type": "default", "theta": 100.0}
MODELS = {
    "full": [{"heads": 4, "rotary": ROTARY}, {"heads": 4, "head_groups": 2, "rotary": ROTARY}],
    "window": [{"heads": 4, "head_groups": 2, "window_size": 4, "rotary": ROTARY}] * 2,
    "mixed_window_soft_cap": [
        {"heads": 4, "window_size": 4, "soft_cap": 3.0, "rotary": ROTARY},
        {"heads": 4, "head_groups": 1, "rotary": ROTARY, "query_norm": {}, "key_norm": {}},
    ],
}


def prompts(batch: int = 2, length: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB_SIZE, (batch, length), generator=torch.Generator().manual_seed(seed))


def record_input_lengths(model: nn.Module) -> list[int]:
    """Return a list that receives the sequence length of the input_ids of every later forward of `model`."""
    lengths: list[int] = []

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        lengths.append(args[0].shape[1])

    model.register_forward_pre_hook(record, with_kwargs=True)
    return lengths


class CachelessAttention(Attention):
    """Attention that declares no KV-cache support, standing in for a mixer that ignores the cache."""

    supports_kv_cache = False


@pytest.mark.parametrize("name", MODELS)
def test_generate_greedy_matches_full_forwards(name):
    model = TinyModel(MODELS[name]).eval()
    input_ids = prompts()

    actual = generate(model, input_ids, max_new_tokens=12, temperature=0)

    expected = greedy_without_cache(model, input_ids, 12)
    assert actual.shape == (2, 17)
    assert torch.equal(actual[:, :5], input_ids)
    assert torch.equal(actual, expected)


def test_generate_attention_model_uses_cache(caplog):
    model = TinyModel(MODELS["mixed_window_soft_cap"]).eval()
    lengths = record_input_lengths(model)

    with caplog.at_level("WARNING", logger="blockspec.generation"):
        generate(model, prompts(), max_new_tokens=6, temperature=0)

    assert mixers_without_kv_cache(model) == []
    assert lengths == [5, 1, 1, 1, 1, 1]
    assert caplog.records == []


def test_generate_without_cache_for_undeclared_mixer(caplog):
    model = TinyModel(MODELS["full"]).eval()
    model.layers[1].__class__ = CachelessAttention
    lengths = record_input_lengths(model)
    input_ids = prompts()

    with caplog.at_level("WARNING", logger="blockspec.generation"):
        actual = generate(model, input_ids, max_new_tokens=6, temperature=0)

    assert mixers_without_kv_cache(model) == ["CachelessAttention"]
    assert lengths == [5, 6, 7, 8, 9, 10]
    assert torch.equal(actual, greedy_without_cache(model, input_ids, 6))
    assert len(caplog.records) == 1
    assert "CachelessAttention" in caplog.records[0].getMessage()


def test_generate_window_crosses_boundary_with_short_prompt():
    model = TinyModel(MODELS["window"]).eval()
    input_ids = prompts(batch=1, length=2, seed=3)

    actual = generate(model, input_ids, max_new_tokens=12, temperature=0)

    assert torch.equal(actual, greedy_without_cache(model, input_ids, 12))
    assert len(set(actual[0, 2:].tolist())) > 1  # the test would be weak if one token repeated


def test_generate_sampling_repeats_with_seed():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts()

    first = generate(model, input_ids, max_new_tokens=10, temperature=20.0, seed=7)
    second = generate(model, input_ids, max_new_tokens=10, temperature=20.0, seed=7)
    other = generate(model, input_ids, max_new_tokens=10, temperature=20.0, seed=8)

    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert first.shape == (2, 15)


def test_generate_sampling_leaves_global_rng():
    model = TinyModel(MODELS["full"]).eval()
    torch.manual_seed(123)
    expected = torch.rand(3)

    torch.manual_seed(123)
    generate(model, prompts(), max_new_tokens=3, seed=1)

    assert torch.equal(torch.rand(3), expected)


def test_generate_top_k_one_is_greedy():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts()

    sampled = generate(model, input_ids, max_new_tokens=8, temperature=1.0, top_k=1, seed=0)

    assert torch.equal(sampled, generate(model, input_ids, max_new_tokens=8, temperature=0))


def test_generate_small_top_p_is_greedy():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts()

    sampled = generate(model, input_ids, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=0)

    assert torch.equal(sampled, generate(model, input_ids, max_new_tokens=8, temperature=0))


def test_generate_stops_rows_at_eos():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts()
    greedy = generate(model, input_ids, max_new_tokens=10, temperature=0)
    eos = int(greedy[0, 5 + 2])  # the third new token of row 0
    row_1_finish = [i for i, token in enumerate(greedy[1, 5:].tolist()) if token == eos]

    actual = generate(model, input_ids, max_new_tokens=10, temperature=0, eos_token_id=eos)

    first_eos = greedy[0, 5:].tolist().index(eos)
    assert torch.equal(actual[0, : 5 + first_eos + 1], greedy[0, : 5 + first_eos + 1])
    assert (actual[0, 5 + first_eos :] == eos).all()
    if row_1_finish:
        assert actual.shape[1] == 5 + max(first_eos, row_1_finish[0]) + 1
    else:
        assert torch.equal(actual[1], greedy[1])


def test_generate_stops_early_when_all_rows_finish():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts(batch=1)
    greedy = generate(model, input_ids, max_new_tokens=10, temperature=0)
    eos = int(greedy[0, 5])

    actual = generate(model, input_ids, max_new_tokens=10, temperature=0, eos_token_id=[999, eos])

    assert actual.shape == (1, 6)
    assert actual[0, 5] == eos


def test_generate_restores_training_mode():
    model = TinyModel(MODELS["full"]).train()

    generate(model, prompts(), max_new_tokens=2, temperature=0)

    assert model.training
    assert all(module.training for module in model.modules())


def test_generate_zero_new_tokens_returns_prompt():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts()

    assert torch.equal(generate(model, input_ids, max_new_tokens=0), input_ids)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"temperature": -1.0}, r"temperature must be >= 0 \(0 decodes greedily\), got -1.0"),
        ({"top_k": 0}, r"top_k must be >= 1 or None, got 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\] or None, got 1.5"),
        ({"max_new_tokens": -2}, r"max_new_tokens must be >= 0, got -2"),
    ],
)
def test_generate_rejects_invalid_arguments(arguments, message):
    model = TinyModel(MODELS["full"])
    arguments = {"max_new_tokens": 2, **arguments}

    with pytest.raises(ValueError, match=message):
        generate(model, prompts(), **arguments)


def test_generate_rejects_flat_input():
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, prompt_length\).*got \(5,\)"):
        generate(TinyModel(MODELS["full"]), torch.arange(5), max_new_tokens=1)


def test_keep_top_k_masks_below_kth():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0], [0.0, 0.0, 5.0, 1.0]])

    filtered = _keep_top_k(logits, 2)

    inf = float("-inf")
    assert filtered.tolist() == [[inf, 4.0, 3.0, inf], [inf, inf, 5.0, 1.0]]


def test_keep_top_p_keeps_smallest_covering_set():
    probabilities = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    logits = probabilities.log()

    covering_0_7 = _keep_top_p(logits, 0.7)  # 0.5 + 0.3 reaches 0.7
    covering_0_8 = _keep_top_p(logits, 0.8)  # 0.5 + 0.3 reaches 0.8 (up to rounding)
    covering_0_5 = _keep_top_p(logits, 0.5)  # 0.5 alone reaches 0.5

    assert torch.isfinite(covering_0_7).tolist() == [[False, True, True, False]]
    assert torch.isfinite(covering_0_5).tolist() == [[False, True, False, False]]
    assert torch.isfinite(covering_0_8)[0, 1:3].all()


def test_layer_cache_rolls_window():
    layer_cache = LayerKVCache(window_size=4)
    keys = torch.arange(10, dtype=torch.float32).view(1, 1, 10, 1)

    returned_keys, _, returned_positions = layer_cache.update(keys[:, :, :6], keys[:, :, :6], torch.arange(6))
    assert returned_positions.tolist() == [0, 1, 2, 3, 4, 5]
    assert layer_cache.positions.tolist() == [2, 3, 4, 5]

    for position in range(6, 10):
        returned_keys, _, returned_positions = layer_cache.update(
            keys[:, :, position : position + 1], keys[:, :, position : position + 1], torch.tensor([position])
        )
        assert returned_positions.tolist() == list(range(position - 4, position + 1))

    assert layer_cache.stored == 4
    assert layer_cache.length == 10
    assert layer_cache.keys.flatten().tolist() == [6.0, 7.0, 8.0, 9.0]
    assert returned_keys.flatten().tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_layer_cache_keeps_everything_without_window():
    layer_cache = LayerKVCache()
    for position in range(7):
        layer_cache.update(torch.zeros(2, 3, 1, 4), torch.zeros(2, 3, 1, 4), torch.tensor([position]))

    assert layer_cache.stored == 7
    assert layer_cache.keys.shape == (2, 3, 7, 4)


def test_layer_cache_grows_past_capacity():
    layer_cache = LayerKVCache()
    keys = torch.randn(2, 3, 40, 4, generator=torch.Generator().manual_seed(0))
    values = keys * 2

    for start in range(0, 40, 3):
        stop = min(start + 3, 40)
        returned_keys, returned_values, returned_positions = layer_cache.update(
            keys[:, :, start:stop], values[:, :, start:stop], torch.arange(start, stop)
        )

    assert layer_cache.stored == 40
    assert layer_cache.length == 40
    assert torch.equal(returned_keys, keys)
    assert torch.equal(returned_values, values)
    assert returned_positions.tolist() == list(range(40))


def test_kv_cache_length_and_layers():
    cache = KVCache()
    assert cache.length == 0

    cache.layer(0).update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2), torch.arange(3))
    cache.layer(1, window_size=2).update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2), torch.arange(3))

    assert cache.length == 3
    assert len(cache) == 2
    assert cache.layer(1, window_size=2).stored == 2


def test_kv_cache_rejects_layer_window_mismatch():
    cache = KVCache()
    cache.layer(3, window_size=4)

    with pytest.raises(ValueError, match=r"layer 3 was created with window_size=4, got None"):
        cache.layer(3)


# ---------------------------------------------------------------------- the real language model

LM_YAML = """
type: lm
hidden_size: 32
embeddings: {vocab_size: 64}
transformer:
  type: repeat
  num_layers: 4
  blocks:
    local:
      mixer: {heads: 4, head_groups: 2, window_size: 4, rotary: {type: default, theta: 100.0}}
      mlp: {intermediate_size: 64}
    global:
      mixer: {heads: 4, head_groups: 1, rotary: {type: llama3, original_context_length: 16, factor: 2.0}, query_norm: {}, key_norm: {}}
      mlp: {intermediate_size: 64}
  pattern: [local, global]
"""


def build_lm(tmp_path):
    path = tmp_path / "lm.yaml"
    path.write_text(LM_YAML)
    model = load_config(path).build(device="cpu", seed=0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def test_generate_lm_greedy_matches_full_forwards(tmp_path):
    model = build_lm(tmp_path)
    input_ids = torch.randint(0, 64, (2, 3), generator=torch.Generator().manual_seed(5))

    actual = generate(model, input_ids, max_new_tokens=12, temperature=0)

    assert actual.shape == (2, 15)
    assert torch.equal(actual, greedy_without_cache(model, input_ids, 12))


def test_generate_lm_uses_cache(tmp_path):
    model = build_lm(tmp_path)
    lengths = record_input_lengths(model)

    generate(model, torch.zeros(1, 3, dtype=torch.long), max_new_tokens=4, temperature=0)

    assert lengths == [3, 1, 1, 1]


def test_generate_lm_cache_has_every_layer(tmp_path):
    model = build_lm(tmp_path)
    cache = KVCache()

    with torch.no_grad():
        model(torch.zeros(1, 6, dtype=torch.long), cache=cache)

    assert len(cache) == 4
    assert cache.length == 6
    assert [cache.layer(index, window_size=window).stored for index, window in enumerate([4, None, 4, None])] == [4, 6, 4, 6]


def test_generate_accepts_tensor_eos():
    model = TinyModel(MODELS["full"]).eval()
    input_ids = prompts()
    greedy = generate(model, input_ids, max_new_tokens=6, temperature=0)
    eos = int(greedy[0, 5 + 1])
    expected = generate(model, input_ids, max_new_tokens=6, temperature=0, eos_token_id=eos)
    actual = generate(model, input_ids, max_new_tokens=6, temperature=0, eos_token_id=torch.tensor(eos))
    assert torch.equal(actual, expected)
