"""Forward and generation speed of blockspec against transformers on the same weights.

A random transformers model is built from a Hugging Face config (SmolLM2-135M's shape by
default, optionally with fewer layers), saved, and loaded into blockspec with `load_hf`,
so both run identical weights. Each measurement is the median wall time of several runs
after a warm-up run, taken in the same process one after the other. The ratio column is
blockspec time / transformers time, so below 1 means blockspec is faster.

    python benchmarks/compare_transformers.py --layers 4 --batch 4 --seq 256

Not part of the test suite. Needs transformers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import blockspec
from blockspec.convert import load_hf

SMOLLM2_135M = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
    "max_position_embeddings": 8192,
}


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of `repeats` calls of `function`, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_models(hf_config: dict, dtype: torch.dtype, directory: Path):
    """Return (transformers model, blockspec model) holding the same random weights."""
    import transformers

    torch.manual_seed(0)
    config = transformers.CONFIG_MAPPING[hf_config["model_type"]].from_dict(dict(hf_config))
    reference = transformers.AutoModelForCausalLM.from_config(config).to(dtype).eval()
    reference.save_pretrained(directory)
    _, model = load_hf(directory, dtype=dtype, progress=False)
    return reference, model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare blockspec and transformers forward and generation speed.")
    parser.add_argument("--config", type=Path, help="a Hugging Face config.json (default: SmolLM2-135M's shape)")
    parser.add_argument("--layers", type=int, help="override num_hidden_layers, to keep the run short")
    parser.add_argument("--batch", type=int, default=4, help="sequences per forward pass")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence in the forward pass")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens generated after a 16-token prompt")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (after one warm-up run)")
    parser.add_argument("--dtype", default="float32", help="torch dtype of both models")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    arguments = parser.parse_args()

    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    hf_config = json.loads(arguments.config.read_text()) if arguments.config else dict(SMOLLM2_135M)
    if arguments.layers:
        hf_config["num_hidden_layers"] = arguments.layers
    dtype = getattr(torch, arguments.dtype)

    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        reference, model = build_models(hf_config, dtype, Path(directory))
        vocab = hf_config["vocab_size"]
        generator = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, vocab, (arguments.batch, arguments.seq), generator=generator)
        prompt = torch.randint(0, vocab, (1, 16), generator=generator)

        difference = (model(tokens).logits - reference(tokens).logits).abs().max().item()
        rows = [
            (
                f"forward {arguments.batch}x{arguments.seq}",
                median_seconds(lambda: model(tokens), arguments.repeats),
                median_seconds(lambda: reference(tokens), arguments.repeats),
            ),
            (
                f"greedy {arguments.new_tokens} tokens",
                median_seconds(lambda: blockspec.generate(model, prompt, max_new_tokens=arguments.new_tokens, temperature=0.0), arguments.repeats),
                median_seconds(
                    lambda: reference.generate(
                        prompt,
                        attention_mask=torch.ones_like(prompt),
                        max_new_tokens=arguments.new_tokens,
                        min_new_tokens=arguments.new_tokens,
                        do_sample=False,
                        pad_token_id=0,
                    ),
                    arguments.repeats,
                ),
            ),
        ]

    import transformers

    print(f"model: {hf_config['model_type']}, {hf_config['num_hidden_layers']} layers, hidden {hf_config['hidden_size']}, {arguments.dtype}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"max |logits difference| = {difference:.2e}")
    print(f"{'measurement':<24} {'blockspec s':>12} {'transformers s':>15} {'ratio':>7}")
    for name, ours, theirs in rows:
        print(f"{name:<24} {ours:>12.4f} {theirs:>15.4f} {ours / theirs:>7.2f}")


if __name__ == "__main__":
    main()
