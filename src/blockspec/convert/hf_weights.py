"""Hugging Face safetensors checkpoints: `load_hf` and `save_hf`.

Import builds the model on the meta device and streams the checkpoint into it one
tensor at a time: a parameter gets storage when its first tensor arrives, so peak memory
stays near one copy of the model. Every name and shape is checked before anything is
loaded, and all problems are reported in one `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..build import as_dtype, parameter_spec
from ..layers.families import ModelConfig
from ..loading import load_config
from .hf_config import config_from_hf, read_hf_config
from .hf_export import config_to_hf, warn_about_differences
from .hf_names import TensorRecipe, hf_tensor_recipes

__all__ = ["CheckpointError", "TensorReader", "load_hf", "load_tensors", "save_hf"]

logger = logging.getLogger(__name__)

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"

# Tensors of older checkpoints that transformers 5 recomputes instead of loading.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "attn.masked_bias", "attn.bias")


class CheckpointError(ValueError):
    """A checkpoint whose tensors do not match the model: missing, unexpected or misshapen tensors."""


class TensorReader:
    """Read access to the named tensors of a checkpoint, one tensor at a time."""

    def names(self) -> list[str]:
        """Return every tensor name of the checkpoint."""
        raise NotImplementedError

    def shape(self, name: str) -> tuple[int, ...]:
        """Return the shape of a tensor without reading its data."""
        raise NotImplementedError

    def get(self, name: str) -> torch.Tensor:
        """Return the tensor, read from disk now."""
        raise NotImplementedError


class SafetensorsReader(TensorReader):
    """A single `model.safetensors` or shards listed by `model.safetensors.index.json`."""

    def __init__(self, directory: str | os.PathLike[str]):
        from safetensors import SafetensorError, safe_open

        directory = Path(directory)
        index_path = directory / SAFETENSORS_INDEX
        if index_path.is_file():
            weight_map = _read_weight_map(index_path)
        elif (directory / SAFETENSORS_FILE).is_file():
            weight_map = {}
        else:
            raise FileNotFoundError(f"no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX} in {directory}")
        files = sorted(set(weight_map.values())) or [SAFETENSORS_FILE]
        self._handles = {}
        for file in files:
            try:
                self._handles[file] = safe_open(str(directory / file), framework="pt")
            except (SafetensorError, OSError) as error:
                raise CheckpointError(f"cannot read {directory / file}: {error}; the file may be truncated or not a safetensors file") from None
        self._file_of: dict[str, str] = {}
        for file, handle in self._handles.items():
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not iterable)
                self._file_of[name] = file

    def names(self) -> list[str]:
        return list(self._file_of)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self._file_of[name]].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self._handles[self._file_of[name]].get_tensor(name)


def _read_weight_map(index_path: Path) -> dict[str, str]:
    """Return the tensor name -> shard file map of a `model.safetensors.index.json`."""
    try:
        with index_path.open(encoding="utf-8") as file:
            index = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{index_path} is not valid JSON: {error}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(file, str) for file in weight_map.values()):
        raise CheckpointError(f"{index_path} has no weight_map object of tensor name -> file name")
    return weight_map


# ---------------------------------------------------------------------- import


def load_hf(
    path: str | os.PathLike[str],
    config: ModelConfig | str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    ignore_keys: tuple[str, ...] | list[str] = (),
) -> tuple[ModelConfig, nn.Module]:
    """Load a Hugging Face checkpoint directory (config.json + safetensors) into a blockspec model.

    Returns `(config, model)`. The config is imported from config.json unless `config` (a
    ModelConfig, or a YAML file or text) is given, for example to add LoRA adapters. A
    given config's fields that differ from config.json are logged as a warning. `dtype`, a
    torch dtype or its name ("bfloat16"), applies to every floating-point parameter (None
    means float32), `progress=False` hides
    the progress bar, and `ignore_keys` is passed to `config_from_hf`. Raises
    `CheckpointError` listing every missing, unexpected or misshapen tensor before any
    weight is loaded.
    """
    hf_config = read_hf_config(path)
    file_config = config_from_hf(path, ignore_keys=ignore_keys)  # the path, so errors name the file
    if config is None:
        config = file_config
    else:
        config = config if isinstance(config, ModelConfig) else load_config(config)
        warn_about_differences(config, file_config, Path(path) / "config.json", log=logger)

    reader = SafetensorsReader(path)
    fused = any(name.endswith((".experts.gate_up_proj", ".experts.down_proj")) for name in reader.names())
    recipes = hf_tensor_recipes(config.resolved, hf_config["model_type"], fused_experts=fused)
    recipes = _strip_prefix_if_needed(recipes, reader.names())
    model = config.build(device="meta")
    load_tensors(model, reader, recipes, dtype=as_dtype(dtype), device=device, progress=progress, source=str(path))
    return config, model


def _strip_prefix_if_needed(recipes: list[TensorRecipe], names: Iterable[str]) -> list[TensorRecipe]:
    """Accept checkpoints of the bare decoder (`LlamaModel`), whose names lack the `model.` prefix."""
    names = set(names)
    if any(name.startswith("model.") for name in names) or not any(name.startswith("layers.") for name in names):
        return recipes
    return [
        TensorRecipe(recipe.name.removeprefix("model."), recipe.parts, recipe.dim, recipe.transpose, recipe.optional or recipe.name == "lm_head.weight")
        for recipe in recipes
    ]


def load_tensors(
    model: nn.Module,
    reader: TensorReader,
    recipes: list[TensorRecipe],
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    source: str = "checkpoint",
) -> nn.Module:
    """Fill the parameters of a meta-built `model` from `reader` following `recipes`, then its buffers.

    LoRA adapters, which no checkpoint contains, are initialized as their spec says (seeded
    by their name). Raises `CheckpointError` (before loading anything) for missing,
    unexpected and misshapen tensors and for other parameters that no recipe fills.
    """
    parameters = dict(model.named_parameters())
    present = set(reader.names())
    _check(parameters, reader, recipes, present, source)

    allocator = _Allocator(model, torch.device(device), dtype or torch.float32)
    to_load = [recipe for recipe in recipes if recipe.name in present and not _duplicates_tied(recipe, recipes)]
    with torch.no_grad():
        for recipe in _progress(to_load, progress, source):
            tensor = reader.get(recipe.name)
            if recipe.transpose:
                tensor = tensor.t()
            sizes = [_part_shape(parameters, part)[recipe.dim] for part in recipe.parts]
            for part, piece in zip(recipe.parts, torch.split(tensor, sizes, dim=recipe.dim)):
                target = allocator.parameter(part.name)
                (target[part.expert] if part.expert is not None else target).copy_(piece)
            del tensor
        _initialize_adapters(allocator, parameters)
    allocator.finish()
    return model


def _is_lora(parameter: torch.Tensor) -> bool:
    spec = parameter_spec(parameter)
    return spec is not None and spec.is_lora


def _initialize_adapters(allocator: _Allocator, parameters: dict[str, torch.Tensor]) -> None:
    from ..layers.initialization.module import initialize

    for name, parameter in parameters.items():
        if not _is_lora(parameter):
            continue
        spec = parameter_spec(parameter)
        seed = int.from_bytes(hashlib.sha256(f"lora/{name}".encode()).digest()[:8], "little") & (2**63 - 1)
        generator = torch.Generator(device=allocator.device).manual_seed(seed)
        initialize(allocator.parameter(name), spec.initialization, fan_in=spec.fan_in, num_layers=spec.num_layers, generator=generator)


def _duplicates_tied(recipe: TensorRecipe, recipes: list[TensorRecipe]) -> bool:
    """Return whether an optional recipe fills a parameter that another recipe fills too (a tied output weight)."""
    if not recipe.optional:
        return False
    names = {part.name for part in recipe.parts}
    return any(other is not recipe and names & {part.name for part in other.parts} for other in recipes)


def _part_shape(parameters: dict[str, torch.Tensor], part: Any) -> tuple[int, ...]:
    shape = tuple(parameters[part.name].shape)
    return shape[1:] if part.expert is not None else shape


def _expected_shape(parameters: dict[str, torch.Tensor], recipe: TensorRecipe) -> tuple[int, ...]:
    shapes = [_part_shape(parameters, part) for part in recipe.parts]
    shape = list(shapes[0])
    shape[recipe.dim] = sum(part_shape[recipe.dim] for part_shape in shapes)
    return tuple(reversed(shape)) if recipe.transpose else tuple(shape)


def _check(parameters: dict[str, torch.Tensor], reader: TensorReader, recipes: list[TensorRecipe], present: set[str], source: str) -> None:
    problems = []
    unknown_parts = sorted({part.name for recipe in recipes for part in recipe.parts} - set(parameters))
    if unknown_parts:
        problems.append(f"the model has no parameters {', '.join(unknown_parts)} (a blockspec conversion bug; please report it)")
    expected_names = {recipe.name for recipe in recipes}
    missing = [recipe.name for recipe in recipes if recipe.name not in present and not recipe.optional]
    unexpected = sorted(name for name in present - expected_names if not name.endswith(_IGNORED_SUFFIXES))
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {', '.join(unexpected)}")
    if not unknown_parts:
        mismatched = []
        for recipe in recipes:
            if recipe.name in present:
                expected, actual = _expected_shape(parameters, recipe), reader.shape(recipe.name)
                if expected != actual:
                    mismatched.append(f"{recipe.name}: checkpoint {list(actual)}, model expects {list(expected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): " + "; ".join(mismatched))
        filled = {part.name for recipe in recipes for part in recipe.parts}
        unfilled = sorted(name for name in set(parameters) - filled if not _is_lora(parameters[name]))
        if unfilled:
            problems.append(f"model parameters that no checkpoint tensor fills: {', '.join(unfilled)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model:\n  - " + "\n  - ".join(problems))


def _progress(recipes: list[TensorRecipe], enabled: bool, source: str) -> Iterable[TensorRecipe]:
    if not enabled:
        return recipes
    from tqdm.auto import tqdm

    return tqdm(recipes, desc=f"Loading {Path(source).name}", unit="tensor")


class _Allocator:
    """Allocator of real storage for meta parameters on first use, replacing them in every module slot that contains them."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.slots: dict[int, list[tuple[nn.Module, str]]] = {}
        for module in model.modules():
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    self.slots.setdefault(id(parameter), []).append((module, name))
        self.parameters = dict(model.named_parameters())

    def parameter(self, name: str) -> torch.Tensor:
        """Return the storage of parameter `name`, allocating it on the first call."""
        parameter = self.parameters[name]
        if parameter.device == self.device and not parameter.is_meta:
            return parameter.data
        dtype = self.dtype if parameter.is_floating_point() else parameter.dtype
        allocated = nn.Parameter(torch.empty(parameter.shape, dtype=dtype, device=self.device), requires_grad=parameter.requires_grad)
        allocated.__dict__.update(parameter.__dict__)  # keeps the ParameterSpec and other attributes
        for module, slot in self.slots.pop(id(parameter)):
            module._parameters[slot] = allocated
        self.slots[id(allocated)] = []
        for key, value in self.parameters.items():
            if value is parameter:
                self.parameters[key] = allocated
        return allocated.data

    def finish(self) -> None:
        """Allocate the buffers and recompute them with `reset_buffers()`."""
        for module in self.model.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.is_meta:
                    module._buffers[name] = torch.empty(buffer.shape, dtype=buffer.dtype, device=self.device)
        for module in self.model.modules():
            reset_buffers = getattr(module, "reset_buffers", None)
            if callable(reset_buffers):
                reset_buffers()


# ---------------------------------------------------------------------- export


def save_hf(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    config: ModelConfig | None = None,
    model_type: str | None = None,
    dtype: torch.dtype | str | None = None,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Write `model` as a Hugging Face checkpoint: `config.json` and `model.safetensors`.

    `config` defaults to `model.config`, and `model_type` to the type inferred from it (see
    `config_to_hf`). `dtype`, a torch dtype or its name ("bfloat16"), converts
    floating-point tensors, and None keeps them.
    `extra_config` adds keys to config.json (token ids, max_position_embeddings). The
    files are written to a temporary directory next to `path` and moved in place only
    when both are complete, so a failure leaves `path` as it was. Returns `path`.
    """
    from safetensors.torch import save_file

    config = config if config is not None else getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError("save_hf needs the model's config: pass config=... or use a model built by blockspec")
    extra = dict(extra_config or {})
    max_positions = extra.pop("max_position_embeddings", None)
    hf_config = config_to_hf(config, model_type=model_type, max_position_embeddings=max_positions, extra=extra)
    recipes = [recipe for recipe in hf_tensor_recipes(config.resolved, hf_config["model_type"]) if not recipe.optional]
    # Every name, so that each layer of a shared block (`shared_blocks`) has its own entry.
    parameters = dict(model.named_parameters(remove_duplicate=False))
    shared_blocks = getattr(config.transformer, "shared_blocks", None)
    if shared_blocks:
        logger.warning(
            "transformer.shared_blocks %s: writing the shared weights under every layer that uses them, "
            "so transformers loads them as separate copies that fine-tuning there no longer keeps equal",
            shared_blocks,
        )
    adapters = [name for name, parameter in parameters.items() if _is_lora(parameter)]
    if adapters:
        raise CheckpointError(
            f"the model has LoRA adapters ({', '.join(adapters[:4])}{', ...' if len(adapters) > 4 else ''}), "
            "which a Hugging Face checkpoint cannot hold; merge them with blockspec.merge_lora(model) before saving"
        )
    missing = sorted({part.name for recipe in recipes for part in recipe.parts} - set(parameters))
    if missing:
        raise CheckpointError(f"the model does not match its config: parameters {', '.join(missing)} are missing")
    tensors = dict(_export_tensors(parameters, recipes, as_dtype(dtype)))
    first = next(iter(tensors.values()))
    hf_config.setdefault("dtype", str(first.dtype).removeprefix("torch."))

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp creates it private; the checkpoint directory should not be
    try:
        save_file(tensors, str(staging / SAFETENSORS_FILE), metadata={"format": "pt"})
        with (staging / "config.json").open("w", encoding="utf-8") as file:
            json.dump(hf_config, file, indent=2, sort_keys=True)
            file.write("\n")
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _export_tensors(parameters: dict[str, torch.Tensor], recipes: list[TensorRecipe], dtype: torch.dtype | None) -> Iterator[tuple[str, torch.Tensor]]:
    written_storages: set[int] = set()
    for recipe in recipes:
        pieces = []
        for part in recipe.parts:
            tensor = parameters[part.name].detach()
            pieces.append(tensor[part.expert] if part.expert is not None else tensor)
        tensor = torch.cat(pieces, dim=recipe.dim) if len(pieces) > 1 else pieces[0]
        if recipe.transpose:
            tensor = tensor.t()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensor = tensor.to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if any(part.expert is not None for part in recipe.parts) or storage in written_storages:
            # safetensors rejects tensors that share storage: one expert's slice shares it with the
            # others, and a shared block's parameter is the same tensor in every layer that uses it.
            tensor = tensor.clone()
        written_storages.add(tensor.untyped_storage().data_ptr())
        yield recipe.name, tensor


def _move_into(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    for stale in (SAFETENSORS_INDEX,):
        # A shard index left from an earlier save would point transformers at other files.
        if (target / stale).exists():
            (target / stale).unlink()
    for file in staging.iterdir():
        os.replace(file, target / file.name)
