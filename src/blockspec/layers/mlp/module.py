"""The dense MLP and the mixture-of-experts layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...build import build_module, register_module
from ..families import PeftConfig
from ..initialization.config import DepthScaledNormalInitializationConfig
from ..parameter.module import parameter_from_config
from .config import DEFAULT_INIT_STD, MLPConfig, MoEConfig

__all__ = ["MLP", "MixtureOfExperts", "activation_function", "load_balancing_loss", "router_z_loss"]


def _squared_relu(x: torch.Tensor) -> torch.Tensor:
    return torch.square(F.relu(x))


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "squared_relu": _squared_relu,
}


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the activation function called `name` in MLPConfig.activation."""
    return _ACTIVATIONS[name]


def _scale(value: float | None) -> float:
    return 1.0 if value is None else value


@register_module(MLPConfig)
class MLP(nn.Module):
    """down(act(gate(x)) * up(x)) when gated, else down(act(up(x)))."""

    def __init__(
        self,
        config: MLPConfig,
        *,
        hidden_size: int,
        layer_index: int = 0,
        num_layers: int = 1,
        lr_scale: float = 1.0,
        peft: PeftConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.activation = activation_function(config.activation)
        linear_args = {"lr_scale": lr_scale * _scale(config.lr_scale), "peft": peft, "num_layers": num_layers}
        width = config.intermediate_size
        self.gate = build_module(config.gate, in_features=hidden_size, out_features=width, **linear_args) if config.gated else None
        self.up = build_module(config.up, in_features=hidden_size, out_features=width, **linear_args)
        self.down = build_module(config.down, in_features=width, out_features=hidden_size, **linear_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.gate(x)) * self.up(x) if self.gate is not None else self.activation(self.up(x))
        return self.down(hidden)  # (..., intermediate) -> (..., hidden)


@register_module(MoEConfig)
class MixtureOfExperts(nn.Module):
    """Top-k routed experts with batched weights, plus an optional shared expert.

    After each forward, `aux_losses` contains the load-balancing loss (`load_balancing`) and
    the router z-loss (`router_z`) of that call, each multiplied by its coefficient; a loss
    whose coefficient is 0 is left out.
    """

    def __init__(
        self,
        config: MoEConfig,
        *,
        hidden_size: int,
        layer_index: int = 0,
        num_layers: int = 1,
        lr_scale: float = 1.0,
        peft: PeftConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.activation = activation_function(config.activation)
        lr_scale = lr_scale * _scale(config.lr_scale)
        experts, width = config.experts, config.intermediate_size

        self.router = build_module(config.router, in_features=hidden_size, out_features=experts, lr_scale=lr_scale, peft=peft, num_layers=num_layers)
        expert_args = {"lr_scale": lr_scale, "num_layers": num_layers}
        self.gate_weight = parameter_from_config(config.gate, (experts, width, hidden_size), fan_in=hidden_size, **expert_args) if config.gated else None
        self.up_weight = parameter_from_config(config.up, (experts, width, hidden_size), fan_in=hidden_size, **expert_args)
        depth_scaled = DepthScaledNormalInitializationConfig(std=DEFAULT_INIT_STD)
        self.down_weight = parameter_from_config(
            config.down, (experts, hidden_size, width), fan_in=width, default_initialization=depth_scaled, **expert_args
        )

        shared = config.shared_expert_config()
        self.shared_expert = None
        self.shared_expert_gate = None
        if shared is not None:
            self.shared_expert = build_module(shared.resolved, hidden_size=hidden_size, num_layers=num_layers, lr_scale=lr_scale, peft=peft)
        if config.shared_expert_gate:
            gate_config = config.router.model_copy(update={"bias": False})
            self.shared_expert_gate = build_module(gate_config, in_features=hidden_size, out_features=1, lr_scale=lr_scale, num_layers=num_layers)

        self.aux_losses: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (tokens, hidden)

        router_logits = self.router(tokens)  # (tokens, experts)
        weights, selected = self.route(router_logits)  # (tokens, k) each
        output = self._run_experts(tokens, weights.to(x.dtype), selected)

        if self.shared_expert is not None:
            shared = self.shared_expert(tokens)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(tokens)) * shared
            output = output + shared

        self.aux_losses = self._aux_losses(router_logits, selected)
        return output.reshape(shape)

    def route(self, router_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the float32 routing weights and the indices of the top-k experts of every token."""
        probabilities = torch.softmax(router_logits.float(), dim=-1)
        weights, selected = torch.topk(probabilities, self.config.experts_per_token, dim=-1)
        if self.config.normalize_top_k:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, selected

    def _run_experts(self, tokens: torch.Tensor, weights: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        if tokens.is_meta:
            # Routing depends on values that meta tensors lack, so every expert runs on every token.
            return self._run_every_expert(tokens, weights, selected)
        output = torch.zeros_like(tokens)
        # Loop over the experts that received tokens; each runs once on all of its tokens.
        for expert in torch.unique(selected).tolist():
            token_index, slot = torch.where(selected == expert)
            expert_output = self._expert(expert, tokens[token_index])  # (routed, hidden)
            output.index_add_(0, token_index, expert_output * weights[token_index, slot, None])
        return output

    def _run_every_expert(self, tokens: torch.Tensor, weights: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Compute the routed output densely: each expert on all tokens, scaled by its routing weight (0 where not selected).

        Matches the routed loop up to rounding, at about experts / experts_per_token times its compute.
        """
        output = torch.zeros_like(tokens)
        for expert in range(self.config.experts):
            expert_weight = (weights * (selected == expert)).sum(dim=-1)  # (tokens,)
            output = output + self._expert(expert, tokens) * expert_weight[:, None]
        return output

    def _expert(self, expert: int, expert_input: torch.Tensor) -> torch.Tensor:
        """Apply expert number `expert` to `expert_input` (tokens, hidden)."""
        up = F.linear(expert_input, self.up_weight[expert])  # (tokens, intermediate)
        if self.gate_weight is not None:
            hidden = self.activation(F.linear(expert_input, self.gate_weight[expert])) * up
        else:
            hidden = self.activation(up)
        return F.linear(hidden, self.down_weight[expert])  # (tokens, hidden)

    def _aux_losses(self, router_logits: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {}
        if self.config.aux_loss_coefficient > 0:
            balance = load_balancing_loss(router_logits, selected, self.config.experts)
            losses["load_balancing"] = self.config.aux_loss_coefficient * balance
        if self.config.z_loss_coefficient > 0:
            losses["router_z"] = self.config.z_loss_coefficient * router_z_loss(router_logits)
        return losses

    def extra_repr(self) -> str:
        config = self.config
        return f"experts={config.experts}, experts_per_token={config.experts_per_token}, intermediate_size={config.intermediate_size}"


def load_balancing_loss(router_logits: torch.Tensor, selected: torch.Tensor, experts: int) -> torch.Tensor:
    """Return the Switch Transformer load-balancing loss of one layer (unweighted).

    experts * sum over experts and top-k slots of (fraction of tokens sent to the expert in
    that slot) * (mean router probability of the expert): 1 when routing is uniform. This
    is the formula of `load_balancing_loss_func` in Hugging Face transformers' Mixtral,
    applied to one layer without an attention mask.
    """
    probabilities = torch.softmax(router_logits.float(), dim=-1)  # (tokens, experts)
    expert_mask = F.one_hot(selected, experts).float()  # (tokens, k, experts)
    tokens_per_expert = expert_mask.mean(dim=0)  # (k, experts)
    probability_per_expert = probabilities.mean(dim=0)  # (experts,)
    return experts * torch.sum(tokens_per_expert * probability_per_expert)


def router_z_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """Return the ST-MoE router z-loss: the mean over tokens of logsumexp(logits) squared."""
    return torch.logsumexp(router_logits.float(), dim=-1).square().mean()
