"""The main job: SmolLM2-135M-Instruct from examples/smollm2-135m.yaml and the shipped Q4_1 GGUF file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smollm2_chat.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("smollm2_chat", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    module = _load_example()
    try:
        module.smollm2_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return module


@pytest.fixture(scope="module")
def loaded(example):
    return example.load_model()


@pytest.mark.slow
def test_smollm2_answers_paris(example, loaded):
    _, model, tokenizer = loaded

    reply = example.answer(model, tokenizer, "What is the capital of France?")

    assert "Paris" in reply


@pytest.mark.slow
def test_smollm2_logits_match_transformers_gguf_loading(example, loaded):
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF files
    _, model, tokenizer = loaded
    path = example.smollm2_gguf_path()
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    input_ids = example.prompt_ids(tokenizer, "What is the capital of France?")

    with torch.no_grad():
        expected = reference(input_ids).logits
        actual = model(input_ids).logits

    assert actual.shape == (1, input_ids.shape[1], 49152)
    assert (actual - expected).abs().max().item() <= 1e-3


def test_smollm2_config_matches_gguf_metadata(example):
    import gguf

    import blockspec
    from blockspec.convert.gguf import _read_metadata, gguf_to_hf_config
    from blockspec.convert.hf_config import config_from_hf
    from blockspec.convert.hf_export import architecture

    reader = gguf.GGUFReader(str(example.smollm2_gguf_path()))
    described = config_from_hf(gguf_to_hf_config(_read_metadata(reader), {tensor.name for tensor in reader.tensors}))

    assert architecture(described) == architecture(blockspec.load_config(example.CONFIG_PATH))
