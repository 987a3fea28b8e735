"""Autoregressive generation with a key/value cache: greedy decoding and top-k / top-p sampling.

A model used here follows the language model contract: `model(input_ids, cache=cache)`
returns an object with `logits` (batch, seq, vocab) and reads the positions of the new
tokens from `cache.length`.

The cache is used only when every mixer of the model declares `supports_kv_cache = True`
on its class. A mixer is a module whose class is registered with `register_module` for a
`MixerConfig` subclass (or a subclass of such a class). A mixer without the attribute
would see only the newest token when decoding with a cache, so for such models every step
runs the whole sequence through the model instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["KVCache", "LayerKVCache", "generate", "mixers_without_kv_cache"]

logger = logging.getLogger(__name__)


class LayerKVCache:
    """Keys and values of one attention layer, appended to by each forward.

    A full-attention layer writes into preallocated storage that doubles when it fills, so
    each token is copied O(1) times on average. With `window_size` set (a sliding-window
    layer) only the last `window_size` entries are kept between calls, so memory stays
    bounded however long generation runs.

    NOTE: meant for inference under torch.no_grad(). Appends write in place, which would
    invalidate tensors that autograd saved during earlier calls.
    """

    def __init__(self, window_size: int | None = None) -> None:
        self.window_size = window_size
        self.length = 0
        """Number of tokens this layer has seen, stored or dropped."""
        self._keys: torch.Tensor | None = None  # (batch, kv_heads, capacity, head_size)
        self._values: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None  # (capacity,)
        self._stored = 0

    @property
    def stored(self) -> int:
        """Number of entries currently kept."""
        return self._stored

    @property
    def keys(self) -> torch.Tensor | None:
        """Kept keys (batch, kv_heads, stored, head_size), or None before the first update."""
        return None if self._keys is None else self._keys[:, :, : self._stored]

    @property
    def values(self) -> torch.Tensor | None:
        """Kept values (batch, kv_heads, stored, head_size), or None before the first update."""
        return None if self._values is None else self._values[:, :, : self._stored]

    @property
    def positions(self) -> torch.Tensor | None:
        """Positions (stored,) of the kept entries, or None before the first update."""
        return None if self._positions is None else self._positions[: self._stored]

    def update(
        self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append keys and values (batch, kv_heads, seq, head_size) at `positions` (seq,).

        Returns the keys, values and key positions the new queries attend to: every stored
        entry followed by the new ones. For a sliding-window layer this may be more than
        `window_size` entries, because the earliest new queries need older keys. Only the
        last `window_size` are kept for the next call.
        """
        self.length += keys.shape[2]
        if self.window_size is not None:
            return self._update_window(keys, values, positions)
        self._reserve(keys, values, positions)
        end = self._stored + keys.shape[2]
        self._keys[:, :, self._stored : end] = keys
        self._values[:, :, self._stored : end] = values
        self._positions[self._stored : end] = positions
        self._stored = end
        return self.keys, self.values, self.positions

    def _update_window(
        self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._keys is not None:
            keys = torch.cat((self._keys, keys), dim=2)
            values = torch.cat((self._values, values), dim=2)
            positions = torch.cat((self._positions, positions))
        kept = slice(-self.window_size, None)
        self._keys, self._values, self._positions = keys[:, :, kept], values[:, :, kept], positions[kept]
        self._stored = self._keys.shape[2]
        return keys, values, positions

    def _reserve(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> None:
        """Make room for `keys.shape[2]` more entries, doubling the capacity when needed."""
        needed = self._stored + keys.shape[2]
        capacity = 0 if self._keys is None else self._keys.shape[2]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 16)
        batch, kv_heads, _, head_size = keys.shape
        new_keys = keys.new_empty(batch, kv_heads, capacity, head_size)
        new_values = values.new_empty(batch, kv_heads, capacity, values.shape[-1])
        new_positions = positions.new_empty(capacity)
        if self._keys is not None:
            new_keys[:, :, : self._stored] = self.keys
            new_values[:, :, : self._stored] = self.values
            new_positions[: self._stored] = self.positions
        self._keys, self._values, self._positions = new_keys, new_values, new_positions


class KVCache:
    """Per-layer key/value caches of one generation, created on first use by each layer."""

    def __init__(self) -> None:
        self._layers: dict[int, LayerKVCache] = {}

    def layer(self, layer_index: int, *, window_size: int | None = None) -> LayerKVCache:
        """Return the cache of layer `layer_index`, creating it with `window_size` on first use."""
        layer_cache = self._layers.get(layer_index)
        if layer_cache is None:
            layer_cache = self._layers[layer_index] = LayerKVCache(window_size)
        elif layer_cache.window_size != window_size:
            raise ValueError(
                f"KV cache of layer {layer_index} was created with window_size={layer_cache.window_size}, "
                f"got {window_size}; every attention layer needs a distinct layer_index"
            )
        return layer_cache

    @property
    def length(self) -> int:
        """Number of tokens seen so far (0 before the first forward)."""
        return max((layer_cache.length for layer_cache in self._layers.values()), default=0)

    def __len__(self) -> int:
        return len(self._layers)


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens after `input_ids` (batch, prompt) and return the full sequences.

    `temperature == 0` decodes greedily (argmax). Otherwise the next token is sampled from
    softmax(logits / temperature). `top_k` restricts it to the k most likely tokens, and
    `top_p` to the smallest set of most likely tokens whose probabilities add up to top_p. `seed` seeds a
    private generator, so the same seed gives the same tokens and the global RNG is not
    touched. A row that emits an eos token is finished: its later positions are filled with
    the first eos id, and generation stops early when every row is finished, so the result
    has between prompt and prompt + max_new_tokens columns. Every prompt of the batch has
    the same length (there is no padding mask). The model runs in eval mode and its mode is
    restored afterwards.

    Decoding uses a `KVCache` when every mixer of the model declares `supports_kv_cache`.
    Otherwise it logs a warning naming the mixer classes without it and runs the whole
    sequence through the model at every step, which gives the same tokens but costs
    O(length) more compute per token.
    """
    _check_arguments(input_ids, max_new_tokens, temperature, top_k, top_p)
    eos_ids = _eos_tensor(eos_token_id, input_ids.device)
    generator = None
    if seed is not None and temperature != 0:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)

    unsupported = mixers_without_kv_cache(model)
    if unsupported:
        logger.warning(
            "generate runs without a KV cache, recomputing the whole sequence at every step, because these "
            "mixers do not declare supports_kv_cache = True: %s",
            ", ".join(unsupported),
        )

    was_training = model.training
    model.eval()
    try:
        return _generate(model, input_ids, max_new_tokens, temperature, top_k, top_p, eos_ids, generator, use_cache=not unsupported)
    finally:
        model.train(was_training)


def mixers_without_kv_cache(model: nn.Module) -> list[str]:
    """Return the sorted class names of the mixers in `model` that do not set `supports_kv_cache = True`."""
    mixer_classes = _registered_mixer_classes()
    names = set()
    for module in model.modules():
        if isinstance(module, mixer_classes) and getattr(type(module), "supports_kv_cache", False) is not True:
            names.add(type(module).__name__)
    return sorted(names)


def _registered_mixer_classes() -> tuple[type[nn.Module], ...]:
    from .build import registered_modules
    from .layers.families import MixerConfig

    return tuple(registered_modules(MixerConfig).values())


def _generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    eos_ids: torch.Tensor | None,
    generator: torch.Generator | None,
    *,
    use_cache: bool,
) -> torch.Tensor:
    cache = KVCache() if use_cache else None
    sequences = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    step_input = input_ids
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache).logits[:, -1, :].float()  # (batch, vocab)
        next_tokens = _next_tokens(logits, temperature, top_k, top_p, generator)  # (batch,)

        if eos_ids is not None:
            next_tokens = torch.where(finished, eos_ids[0], next_tokens)
            finished |= torch.isin(next_tokens, eos_ids)
        sequences = torch.cat((sequences, next_tokens[:, None]), dim=1)
        if eos_ids is not None and bool(finished.all()):
            break
        # Without a cache the model receives the whole sequence again at every step.
        step_input = next_tokens[:, None] if use_cache else sequences
    return sequences


def _next_tokens(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = _keep_top_k(logits, top_k)
    if top_p is not None:
        logits = _keep_top_p(logits, top_p)
    probabilities = torch.softmax(logits, dim=-1)
    return torch.multinomial(probabilities, num_samples=1, generator=generator)[:, 0]


def _keep_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf (ties with the k-th are kept)."""
    top_k = min(top_k, logits.shape[-1])
    threshold = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (batch, 1)
    return logits.masked_fill(logits < threshold, float("-inf"))


def _keep_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least `top_p`."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # A token is dropped when the tokens before it already reach top_p; the first is always kept.
    dropped_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
    dropped = dropped_sorted.scatter(-1, order, dropped_sorted)
    return logits.masked_fill(dropped, float("-inf"))


def _eos_tensor(eos_token_id: int | Sequence[int] | None, device: torch.device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    if isinstance(eos_token_id, torch.Tensor):
        eos_token_id = eos_token_id.tolist()
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not ids:
        return None
    return torch.tensor(ids, dtype=torch.long, device=device)


def _check_arguments(
    input_ids: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape (batch, prompt_length) with prompt_length >= 1, got {tuple(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 decodes greedily), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
