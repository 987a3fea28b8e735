"""Configs of blocks (`transformer`) and of block sequences (`repeat`)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, ValidationError, model_validator

from ...config import Config, ConfigError
from ...config.base import field_error, merge_errors, relocate
from ..counting import count_parameters
from ..families import (
    BlockConfig,
    BlockSequenceConfig,
    FeedForwardConfig,
    MixerConfig,
    NormalizationConfig,
    PeftConfig,
)
from ..normalization.config import RMSNormConfig

__all__ = ["LayerOverrideConfig", "RepeatSequenceConfig", "TransformerBlockConfig"]


class TransformerBlockConfig(BlockConfig, type_name="transformer"):
    """A pre-norm residual block: x + mixer(norm(x)), then x + mlp(norm(x)).

    Optional post norms normalize each branch's output before it is added to the residual
    (Gemma 2 uses pre and post norms, OLMo 2 uses post norms only with `normalization: {type: none}`).
    """

    mixer: MixerConfig
    """Token mixer (type `attention` when `type` is omitted)."""
    mlp: FeedForwardConfig
    """Per-token feed-forward layer (type `mlp` when `type` is omitted)."""
    normalization: NormalizationConfig = RMSNormConfig()
    """Pre-norm applied to the input of the mixer and, as a separate layer, of the mlp."""
    post_mixer_normalization: NormalizationConfig | None = None
    """Normalization of the mixer output before the residual addition; None means none."""
    post_mlp_normalization: NormalizationConfig | None = None
    """Normalization of the mlp output before the residual addition; None means none."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability on the mixer and mlp outputs before each residual addition (training only)."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of every parameter of this block; None means 1."""
    add_linear_biases: bool | None = None
    """Shortcut: passed to the mixer's and the mlp's `add_linear_biases` where they leave it unset."""
    init_std: float | None = None
    """Shortcut: passed to the mixer's and the mlp's `init_std` where they leave it unset."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "add_linear_biases": {"mixer.add_linear_biases": None, "mlp.add_linear_biases": None},
        "init_std": {"mixer.init_std": None, "mlp.init_std": None},
    }

    def num_parameters(self, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
        """Return the number of parameters of this block in a stream of width `hidden_size`, LoRA adapters of `peft` included."""
        norms = [self.normalization, self.normalization, self.post_mixer_normalization, self.post_mlp_normalization]
        count = count_parameters(self.mixer, hidden_size=hidden_size, peft=peft)
        count += count_parameters(self.mlp, hidden_size=hidden_size, peft=peft)
        count += sum(count_parameters(norm, hidden_size=hidden_size) for norm in norms if norm is not None)
        return count


_SLICE_PATTERN = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")


class LayerOverrideConfig(Config):
    """Field values replaced in the blocks of selected layers of a `repeat` sequence."""

    layers: int | list[int] | str
    """Layer indices: one index, a list of indices, or a Python slice such as "::4" or "1:8" (negative indices count from the end)."""
    set: dict[str, Any]
    """Dotted path inside the block (such as `mixer.window_size`) -> new value."""

    @model_validator(mode="after")
    def _check_syntax(self):
        if isinstance(self.layers, str) and _SLICE_PATTERN.match(self.layers) is None:
            raise field_error(
                ("layers",),
                "invalid_layer_slice",
                "a string must be a slice start:stop[:step] such as '::4' or '1:8'; "
                "use an integer or a list of integers for single layers",
                self.layers,
            )
        if not self.set:
            raise field_error(("set",), "empty_override", "an override needs at least one dotted path -> value", self.set)
        return self

    def layer_indices(self, num_layers: int) -> list[int]:
        """Return the sorted layer indices selected in a sequence of `num_layers` layers.

        Raises ValueError for an index outside the sequence or a slice step of 0.
        """
        if isinstance(self.layers, str):
            match = _SLICE_PATTERN.match(self.layers)
            start, stop, step = (int(part) if part is not None else None for part in match.groups())
            if step == 0:
                raise ValueError(f"slice step must not be 0, got {self.layers!r}")
            return sorted(range(num_layers)[slice(start, stop, step)])
        indices = [self.layers] if isinstance(self.layers, int) else self.layers
        resolved = []
        for index in indices:
            if not -num_layers <= index < num_layers:
                raise ValueError(f"layer index {index} is outside the sequence of {num_layers} layers (valid: 0 to {num_layers - 1})")
            resolved.append(index % num_layers)
        return sorted(set(resolved))


class RepeatSequenceConfig(BlockSequenceConfig, type_name="repeat"):
    """A stack of `num_layers` blocks: one `block` repeated, or named `blocks` tiled by `pattern`.

    `overrides` then change fields of selected layers, and `shared_blocks` makes every
    occurrence of a named block reuse one module (one set of weights).
    """

    num_layers: int = Field(gt=0)
    """Number of layers in the sequence."""
    block: BlockConfig | None = None
    """The block of every layer; set either this or `blocks` with `pattern`."""
    blocks: dict[str, BlockConfig] | None = None
    """Named blocks that `pattern` refers to; set either this or `block`."""
    pattern: list[str] | None = None
    """Names from `blocks`, repeated to fill `num_layers`; its length must divide num_layers."""
    overrides: list[LayerOverrideConfig] = []
    """Per-layer changes applied in order after tiling (a later override wins)."""
    shared_blocks: list[str] = []
    """Names from `blocks` whose every occurrence reuses the first occurrence's module and weights."""
    hidden_size: int | None = Field(None, gt=0)
    """Width of the residual stream; None means the enclosing model's hidden size."""
    full_precision_residual: bool | None = None
    """Whether the residual stream is kept in float32; None means the enclosing model's setting."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of every parameter of the sequence; None means 1."""
    add_linear_biases: bool | None = None
    """Shortcut: passed to `add_linear_biases` of `block` and of every entry of `blocks` that leaves it unset."""
    init_std: float | None = None
    """Shortcut: passed to `init_std` of `block` and of every entry of `blocks` that leaves it unset."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "add_linear_biases": {"block.add_linear_biases": None, "blocks.*.add_linear_biases": None},
        "init_std": {"block.init_std": None, "blocks.*.init_std": None},
    }

    @model_validator(mode="after")
    def _check_layout(self):
        self._check_block_or_blocks()
        checks = [self._check_pattern, self._check_shared_blocks] if self.blocks is not None else []
        errors = []
        for check in checks:
            try:
                check()
            except ValidationError as error:
                errors.append(error)
        if errors:
            # The overrides are checked against the layout, so they wait for a valid one.
            raise merge_errors(errors)
        self._check_overrides()
        return self

    def _check_block_or_blocks(self) -> None:
        if self.block is not None and self.blocks is not None:
            raise field_error(("blocks",), "block_and_blocks", "set either `block` or `blocks` with `pattern`, not both", list(self.blocks))
        if self.block is None and self.blocks is None:
            raise field_error(("block",), "missing_block", "set `block` (one block for every layer) or `blocks` with `pattern`", None)
        if self.block is not None and self.pattern is not None:
            raise field_error(("pattern",), "pattern_without_blocks", "a pattern names entries of `blocks`; with a single `block` remove `pattern`", self.pattern)
        if self.block is not None and self.shared_blocks:
            raise field_error(
                ("shared_blocks",),
                "shared_without_blocks",
                "shared_blocks names entries of `blocks`; to share one block across every layer, "
                "write it as `blocks: {name: ...}`, `pattern: [name]` and `shared_blocks: [name]`",
                self.shared_blocks,
            )

    def _check_pattern(self) -> None:
        names = list(self.blocks)
        if not names:
            raise field_error(("blocks",), "empty_blocks", "define at least one named block", {})
        if not self.pattern:
            raise field_error(("pattern",), "missing_pattern", f"a list of block names is required with `blocks`, e.g. {names}", self.pattern)
        for index, name in enumerate(self.pattern):
            if name not in self.blocks:
                hint = _did_you_mean(name, names)
                raise field_error(("pattern", index), "unknown_block", f"no block named {name!r} in `blocks`.{hint} Defined: {', '.join(names)}", name)
        if self.num_layers % len(self.pattern) != 0:
            raise field_error(
                ("pattern",),
                "pattern_length",
                f"the pattern length {len(self.pattern)} must divide num_layers={self.num_layers}; "
                f"change num_layers to a multiple of {len(self.pattern)} or adjust the pattern",
                self.pattern,
            )
        for name in names:
            if name not in self.pattern:
                raise field_error(("blocks", name), "unused_block", f"block {name!r} is not used in pattern {self.pattern}; add it to the pattern or remove it", name)

    def _check_shared_blocks(self) -> None:
        for index, name in enumerate(self.shared_blocks):
            if name not in self.blocks:
                hint = _did_you_mean(name, list(self.blocks))
                defined = ", ".join(self.blocks)
                raise field_error(("shared_blocks", index), "unknown_block", f"no block named {name!r} in `blocks`.{hint} Defined: {defined}", name)

    def _check_overrides(self) -> None:
        """Check every override on its own first, so all their problems are reported together."""
        names = self.layer_block_names()
        errors = []
        for position, override in enumerate(self.overrides):
            try:
                indices = override.layer_indices(self.num_layers)
            except ValueError as error:
                errors.append(field_error(("overrides", position, "layers"), "invalid_layers", f"{error}", override.layers))
                continue
            shared = [index for index in indices if names[index] in self.shared_blocks]
            if shared:
                errors.append(
                    field_error(
                        ("overrides", position, "layers"),
                        "override_of_shared_block",
                        f"layer {shared[0]} uses shared block {names[shared[0]]!r}, whose occurrences share one module "
                        "and so cannot differ; define a separate named block instead",
                        override.layers,
                    )
                )
                continue
            for name in dict.fromkeys(names[index] for index in indices):
                base = self.block if name is None else self.blocks[name]
                shortcut_errors = _shortcut_errors(base, override.set, position)
                if shortcut_errors:
                    errors.extend(shortcut_errors)
                    break
                try:
                    self._apply_overrides(base, (position,))
                except ValidationError as error:
                    errors.append(error)
                    break
        if errors:
            raise merge_errors(errors)
        # Applying the overrides together validates how they combine.
        self.layer_configs()

    def check_hidden_size(self, hidden_size: int) -> None:
        """Check every layer's mixer against the width the sequence runs at.

        The width is this sequence's own `hidden_size`, or else `hidden_size` from the
        parent. Raises a ValidationError located at the offending block (`block.mixer...`,
        `blocks.<name>.mixer...`, or `overrides[i].set.mixer...` for the last override that
        changed the layer).
        """
        width = self.hidden_size or hidden_size
        if self.block is not None:
            named = {("block",): self.block}
        else:
            named = {("blocks", name): block for name, block in (self.blocks or {}).items()}
        for loc, block in named.items():
            _check_block_width(block, width, loc)
        selections = [override.layer_indices(self.num_layers) for override in self.overrides]
        for index, block in enumerate(self.layer_configs()):
            applied = [position for position, indices in enumerate(selections) if index in indices]
            if applied:
                _check_block_width(block, width, ("overrides", applied[-1], "set"))

    def with_width_defaults(self, hidden_size: int) -> RepeatSequenceConfig:
        """Return a copy whose mixers get the defaults that follow from the width (head size, head groups).

        The width is this sequence's own `hidden_size`, or else `hidden_size` from the
        parent. Only values the user left unset are affected; `to_dict()` is unchanged. A
        sequence with per-layer overrides is returned as it is.
        """
        if self.overrides:
            # An override may change what these values derive from (heads, say), and a
            # resolved dump would then write a base block that contradicts it.
            return self
        width = self.hidden_size or hidden_size
        copy = self.model_copy()
        if self.block is not None:
            object.__setattr__(copy, "block", _block_with_width_defaults(self.block, width))
        if self.blocks is not None:
            blocks = {name: _block_with_width_defaults(block, width) for name, block in self.blocks.items()}
            object.__setattr__(copy, "blocks", blocks)
        return copy

    def layer_block_names(self) -> list[str | None]:
        """Return, per layer, the name of its entry in `blocks` (None for every layer when `block` is used)."""
        if self.blocks is None:
            return [None] * self.num_layers
        return [self.pattern[index % len(self.pattern)] for index in range(self.num_layers)]

    def layer_configs(self) -> list[BlockConfig]:
        """Return the block config of every layer, with the pattern tiled and the overrides applied.

        Layers with the same block and the same overrides share one config object. Raises a
        ValidationError located at `overrides[i].set.<path>` for an invalid path or value.
        """
        names = self.layer_block_names()
        selections = [override.layer_indices(self.num_layers) for override in self.overrides]
        cache: dict[tuple[Any, ...], BlockConfig] = {}
        configs = []
        for index, name in enumerate(names):
            applied = tuple(position for position, indices in enumerate(selections) if index in indices)
            key = (name, applied)
            if key not in cache:
                base = self.block if name is None else self.blocks[name]
                cache[key] = self._apply_overrides(base, applied)
            configs.append(cache[key])
        return configs

    def _apply_overrides(self, base: BlockConfig, positions: tuple[int, ...]) -> BlockConfig:
        if not positions:
            return base
        config = base
        for position in positions:
            values = self.overrides[position].set
            try:
                config = config.with_overrides(values)
            except ConfigError as error:
                errors = []
                for issue in error.issues:
                    key = _override_key(issue.path, values)
                    errors.append(field_error(("overrides", position, "set", key), "invalid_override", issue.message, values.get(key)))
                raise merge_errors(errors) from None
        return config

    def num_parameters(self, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
        """Return the number of parameters of the sequence, LoRA adapters of `peft` included; a shared block counts once."""
        width = self.hidden_size or hidden_size
        names = self.layer_block_names()
        counted_shared = set()
        count = 0
        for name, config in zip(names, self.layer_configs()):
            if name in self.shared_blocks:
                if name in counted_shared:
                    continue
                counted_shared.add(name)
            count += count_parameters(config, hidden_size=width, peft=peft)
        return count


def _override_key(issue_path: str, values: dict[str, Any]) -> str:
    """Return the key of `values` that an issue path (relative to the block) falls under."""
    for key in values:
        if issue_path == key or issue_path.startswith(f"{key}.") or issue_path.startswith(f"{key}["):
            return key
    for key in values:
        if key.startswith(f"{issue_path}.") or not issue_path:
            return key
    return issue_path


def _did_you_mean(name: str, candidates: list[str]) -> str:
    from ...config.errors import did_you_mean

    return did_you_mean(name, candidates)


def _check_block_width(block: BlockConfig, width: int, loc: tuple[str | int, ...]) -> None:
    mixer = getattr(block, "mixer", None)
    check = getattr(mixer, "check_hidden_size", None)
    if check is None:
        return
    try:
        check(width)
    except ValidationError as error:
        raise relocate(error, (*loc, "mixer")) from None


def _block_with_width_defaults(block: BlockConfig, width: int) -> BlockConfig:
    mixer = getattr(block, "mixer", None)
    width_defaults = getattr(mixer, "width_defaults", None)
    if width_defaults is None:
        return block
    copy = block.model_copy()
    copy._fill_defaults("mixer", **width_defaults(width))
    return copy


def _shortcut_errors(base: BlockConfig, values: dict[str, Any], position: int) -> list[ValidationError]:
    """Return an error for every key of an override's `set` that names a shortcut field.

    A shortcut is spent when the block is loaded: it fills the fields it stands for
    wherever they are unset, and the resolved block has them all set. A per-layer override
    of the shortcut would therefore depend on how the block was written, so it is rejected
    in favour of the fields themselves.
    """
    errors = []
    for key, value in values.items():
        *parents, last = key.split(".")
        node: Any = base
        for part in parents:
            node = getattr(node, part, None) if isinstance(node, Config) else None
        if not isinstance(node, Config) or last not in type(node).shortcuts:
            continue
        prefix = ".".join(parents)
        targets = ", ".join(f"{prefix}.{target}" if prefix else target for target in type(node).shortcuts[last])
        message = (
            f"{last} is a shortcut, expanded when the block is loaded, so a per-layer override cannot "
            f"change it; set the fields it stands for instead: {targets}"
        )
        errors.append(field_error(("overrides", position, "set", key), "shortcut_in_override", message, value))
    return errors
