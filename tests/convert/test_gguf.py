"""GGUF import: tiny files written here with the gguf package, compared with transformers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from blockspec import ConfigError
from blockspec.convert import config_from_hf, load_gguf
from blockspec.convert.gguf import _undo_rotary_permutation
from blockspec.convert.hf_export import architecture
from blockspec.convert.hf_weights import CheckpointError

VOCAB = 96
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
LAYERS = 2
INTERMEDIATE = 128  # rows of 64 and 128 values: multiples of the 32-value quantization blocks


def _reference_model(tied: bool = False):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=tied,
        max_position_embeddings=128,
    )
    model = transformers.LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
            else:
                parameter.normal_(0.0, 0.1)
    return model


def _permute_like_llama_cpp(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter: interleave the two rotary halves of every head."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_tensors(model) -> dict[str, np.ndarray]:
    tensors = {}
    for name, tensor in model.state_dict().items():
        array = tensor.numpy()
        if name == "model.embed_tokens.weight":
            tensors["token_embd.weight"] = array
        elif name == "model.norm.weight":
            tensors["output_norm.weight"] = array
        elif name == "lm_head.weight":
            if not model.config.tie_word_embeddings:
                tensors["output.weight"] = array
        else:
            _, _, index, rest = name.split(".", 3)
            module = rest.removesuffix(".weight")
            if module == "self_attn.q_proj":
                array = _permute_like_llama_cpp(array, HEADS)
            elif module == "self_attn.k_proj":
                array = _permute_like_llama_cpp(array, KV_HEADS)
            tensors[f"blk.{index}.{_LAYER_NAMES[module]}.weight"] = array
    return tensors


def _write_gguf(path, model, quantization=gguf.GGMLQuantizationType.F32, architecture_name="llama"):
    writer = gguf.GGUFWriter(str(path), architecture_name)
    writer.add_block_count(LAYERS)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_vocab_size(VOCAB)
    for name, array in _gguf_tensors(model).items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim == 2 and quantization != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, gguf.quants.quantize(array, quantization), raw_dtype=quantization)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _inputs() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))


def test_undo_rotary_permutation_inverts_llama_cpp():
    weight = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)

    assert np.array_equal(_undo_rotary_permutation(_permute_like_llama_cpp(weight, 2), 2), weight)
    assert not np.array_equal(_permute_like_llama_cpp(weight, 2), weight)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_load_f32_matches_source_model(tmp_path, tied):
    reference = _reference_model(tied=tied)
    path = _write_gguf(tmp_path / "tiny.gguf", reference)

    config, model = load_gguf(path, progress=False)
    with torch.no_grad():
        difference = (model(_inputs()).logits - reference(_inputs()).logits).abs().max().item()

    assert architecture(config) == architecture(config_from_hf(reference.config.to_dict()))
    assert config.tied_embeddings is tied
    assert difference <= 1e-5


def test_load_q8_0_matches_transformers_gguf_loading(tmp_path):
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF files
    path = _write_gguf(tmp_path / "tiny-q8_0.gguf", _reference_model(), gguf.GGMLQuantizationType.Q8_0)

    _, model = load_gguf(path, progress=False)
    expected = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        difference = (model(_inputs()).logits - expected(_inputs()).logits).abs().max().item()

    assert difference <= 1e-4


def test_load_q8_0_close_to_unquantized(tmp_path):
    reference = _reference_model()
    path = _write_gguf(tmp_path / "tiny-q8_0.gguf", reference, gguf.GGMLQuantizationType.Q8_0)

    _, model = load_gguf(path, progress=False)
    with torch.no_grad():
        expected = reference(_inputs()).logits
        difference = (model(_inputs()).logits - expected).abs().max().item()

    # Rounding to 8-bit blocks moves the logits by a few percent; a wrong row order would move them by 100%.
    assert 0 < difference <= 0.05 * expected.abs().max().item()


def test_load_into_given_config(tmp_path, caplog):
    reference = _reference_model()
    path = _write_gguf(tmp_path / "tiny.gguf", reference)
    yaml = f"""
type: lm
hidden_size: {HIDDEN}
embeddings: {{vocab_size: {VOCAB}}}
transformer:
  num_layers: {LAYERS}
  block:
    mixer: {{heads: {HEADS}, head_groups: {KV_HEADS}, rotary: {{type: default, theta: 10000.0}}}}
    mlp: {{intermediate_size: {INTERMEDIATE}}}
    normalization: {{type: rms_norm, epsilon: 1.0e-6}}
head:
  normalization: {{type: rms_norm, epsilon: 1.0e-5}}
"""
    with caplog.at_level(logging.WARNING, logger="blockspec.convert.gguf"):
        config, model = load_gguf(path, yaml, progress=False)
    with torch.no_grad():
        difference = (model(_inputs()).logits - reference(_inputs()).logits).abs().max().item()

    assert config.transformer.block.normalization.epsilon == 1e-6
    assert 0 < difference <= 1e-2  # the given epsilon is used, so the logits move a little
    assert "transformer.layers[0].normalization.epsilon: config 1e-06, file 1e-05" in caplog.text
    assert {record.name for record in caplog.records} == {"blockspec.convert.gguf"}


def test_load_into_wrong_shape_rejected(tmp_path):
    path = _write_gguf(tmp_path / "tiny.gguf", _reference_model())
    yaml = f"""
hidden_size: {HIDDEN}
embeddings: {{vocab_size: {VOCAB}}}
transformer:
  num_layers: {LAYERS}
  block:
    mixer: {{heads: {HEADS}, head_groups: {KV_HEADS}, rotary: {{type: default}}}}
    mlp: {{intermediate_size: 96}}
"""
    with pytest.raises(CheckpointError, match=r"blk.0.ffn_up.weight: checkpoint \[128, 64\], model expects \[96, 64\]"):
        load_gguf(path, yaml, progress=False)


def test_non_llama_architecture_rejected(tmp_path):
    path = _write_gguf(tmp_path / "tiny.gguf", _reference_model(), architecture_name="gpt2")

    with pytest.raises(ConfigError, match=r"general.architecture: unsupported GGUF architecture; blockspec reads llama \[got 'gpt2'\]"):
        load_gguf(path, progress=False)


def test_not_a_gguf_file_names_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a gguf file at all")

    with pytest.raises(CheckpointError, match=r"cannot read .*model.gguf as a GGUF file: GGUF magic invalid"):
        load_gguf(path, progress=False)


def test_missing_gguf_file_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GGUF file not found"):
        load_gguf(tmp_path / "absent.gguf", progress=False)
