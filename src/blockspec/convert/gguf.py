"""GGUF import (llama.cpp files of the `llama` architecture): `load_gguf`.

The `gguf` package reads the file (memory-mapped) and dequantizes each tensor to float32.
llama.cpp's converter interleaves the two rotary halves of the query and key rows within
each head. Import undoes that, so the weights match the half-split rotary layout of
Hugging Face Llama and blockspec.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..build import as_dtype
from ..config import ConfigError, ConfigIssue
from ..layers.families import ModelConfig
from ..loading import load_config
from .hf_config import config_from_hf
from .hf_export import warn_about_differences
from .hf_names import TensorPart, TensorRecipe
from .hf_weights import CheckpointError, TensorReader, load_tensors

__all__ = ["gguf_to_hf_config", "load_gguf"]

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("llama",)


class GGUFTensorReader(TensorReader):
    """Dequantized float32 tensors of a GGUF file, with llama.cpp's query/key row order undone."""

    def __init__(self, reader: Any, *, heads: int, kv_heads: int):
        self._tensors = {tensor.name: tensor for tensor in reader.tensors}
        self._heads = heads
        self._kv_heads = kv_heads

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        # GGUF lists dimensions fastest-first; torch lists them slowest-first.
        return tuple(int(size) for size in reversed(self._tensors[name].shape))

    def get(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        tensor = self._tensors[name]
        array = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(self.shape(name))
        if name.endswith("attn_q.weight"):
            array = _undo_rotary_permutation(array, self._heads)
        elif name.endswith("attn_k.weight"):
            array = _undo_rotary_permutation(array, self._kv_heads)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array, order="C")  # unquantized tensors are read-only views of the memory map
        return torch.from_numpy(array)


def _undo_rotary_permutation(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder the rows of each head from llama.cpp's interleaved pairs back to two halves.

    Within a head of d rows, llama.cpp stores row pairs (i, i + d/2) next to each other.
    Viewing the rows as (heads, d/2, 2) and swapping the last two axes restores them.
    """
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _read_metadata(reader: Any) -> dict[str, Any]:
    metadata = {}
    for name, field in reader.fields.items():
        if name.startswith("tokenizer.ggml.") and name not in ("tokenizer.ggml.model",):
            continue  # the vocabulary is large and not needed here
        metadata[name] = field.contents()
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is not None:
        metadata["tokenizer.ggml.tokens.count"] = len(tokens.data)
    return metadata


def _shortest_float(value: float) -> float:
    """Return the float32 metadata value as the shortest decimal that rounds to it (9.99999975e-06 -> 1e-05)."""
    return float(str(np.float32(value)))


def gguf_to_hf_config(metadata: dict[str, Any], tensor_names: set[str]) -> dict[str, Any]:
    """Return the Hugging Face Llama `config.json` mapping described by GGUF metadata."""
    architecture_name = metadata.get("general.architecture")
    if architecture_name not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(
            ConfigIssue(
                path="general.architecture",
                message=f"unsupported GGUF architecture; blockspec reads {', '.join(SUPPORTED_ARCHITECTURES)}",
                value=architecture_name,
            )
        )
    prefix = f"{architecture_name}."

    def value(key: str, default: Any = None) -> Any:
        return metadata.get(prefix + key, default)

    if value("expert_count"):
        raise ConfigError(
            ConfigIssue(path=prefix + "expert_count", message="mixture-of-experts GGUF files are not supported", value=value("expert_count"))
        )
    heads = value("attention.head_count")
    hidden_size = value("embedding_length")
    vocab_size = value("vocab_size") or metadata.get("tokenizer.ggml.tokens.count")
    config: dict[str, Any] = {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": value("feed_forward_length"),
        "num_hidden_layers": value("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": value("attention.head_count_kv", heads),
        "head_dim": value("attention.key_length") or value("rope.dimension_count") or hidden_size // heads,
        "rms_norm_eps": _shortest_float(value("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _shortest_float(value("rope.freq_base", 10000.0)),
        "max_position_embeddings": value("context_length", 2048),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": "blk.0.attn_q.bias" in tensor_names,
    }
    scaling_type = value("rope.scaling.type")
    if scaling_type not in (None, "none"):
        scaling: dict[str, Any] = {"rope_type": scaling_type, "factor": value("rope.scaling.factor")}
        original = value("rope.scaling.original_context_length")
        if original is not None:
            scaling["original_max_position_embeddings"] = original
        config["rope_scaling"] = scaling
    return config


def gguf_tensor_recipes(config: Any) -> list[TensorRecipe]:
    """Return the tensors of a llama-architecture GGUF file and the blockspec parameters they fill."""
    layers = [layer.resolved for layer in config.transformer.layer_configs()]
    recipes = [TensorRecipe("token_embd.weight", (TensorPart("embeddings.word_weight"),))]
    names = {
        "attn_norm": "mixer_normalization",
        "attn_q": "mixer.query",
        "attn_k": "mixer.key",
        "attn_v": "mixer.value",
        "attn_output": "mixer.output",
        "ffn_norm": "mlp_normalization",
        "ffn_gate": "mlp.gate",
        "ffn_up": "mlp.up",
        "ffn_down": "mlp.down",
    }
    for index, layer in enumerate(layers):
        for gguf_name, name in names.items():
            recipes.append(TensorRecipe(f"blk.{index}.{gguf_name}.weight", (TensorPart(f"transformer.layers.{index}.{name}.weight"),)))
        for gguf_name, name in (("attn_q", "query"), ("attn_k", "key"), ("attn_v", "value"), ("attn_output", "output")):
            if getattr(layer.mixer, name).bias:
                recipes.append(TensorRecipe(f"blk.{index}.{gguf_name}.bias", (TensorPart(f"transformer.layers.{index}.mixer.{name}.bias"),)))
    recipes.append(TensorRecipe("output_norm.weight", (TensorPart("head.normalization.weight"),)))
    if config.tied_embeddings:
        recipes.append(TensorRecipe("output.weight", (TensorPart("embeddings.word_weight"),), optional=True))
    else:
        recipes.append(TensorRecipe("output.weight", (TensorPart("head.output_weight"),)))
    return recipes


def load_gguf(
    path: str | os.PathLike[str],
    config: ModelConfig | str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[ModelConfig, nn.Module]:
    """Load a llama-architecture GGUF file into a blockspec model, dequantizing every tensor.

    Without `config` the model config is derived from the file's metadata. With `config`
    (a ModelConfig, or a YAML file or text for `blockspec.load_config`) the weights go into
    a model built from it. Its fields that differ from the file's metadata are logged as a
    warning, and tensors of the wrong shape raise `CheckpointError`. Returns `(config, model)`.
    """
    import gguf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as error:
        # gguf raises ValueError("GGUF magic invalid") for other files and numpy errors for truncated ones.
        raise CheckpointError(f"cannot read {path} as a GGUF file: {error}") from None
    metadata = _read_metadata(reader)
    tensor_names = {tensor.name for tensor in reader.tensors}
    file_config = config_from_hf(gguf_to_hf_config(metadata, tensor_names))
    if config is None:
        config = file_config
    else:
        config = config if isinstance(config, ModelConfig) else load_config(config)
        warn_about_differences(config, file_config, path, log=logger)

    attention = config.transformer.layer_configs()[0].mixer
    tensors = GGUFTensorReader(reader, heads=attention.heads, kv_heads=attention.kv_heads)
    model = config.build(device="meta")
    load_tensors(model, tensors, gguf_tensor_recipes(config.resolved), dtype=as_dtype(dtype), device=device, progress=progress, source=str(path))
    return config, model
