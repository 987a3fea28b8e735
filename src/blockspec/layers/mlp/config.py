"""Configs of the per-token part of a block: the dense `mlp` and the mixture of experts `moe`."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ...config.base import field_error
from ..families import FeedForwardConfig, PeftConfig
from ..initialization.config import (
    DepthScaledNormalInitializationConfig,
    NormalInitializationConfig,
    ZerosInitializationConfig,
)
from ..linear.config import LinearConfig
from ..parameter.config import ParameterConfig

__all__ = ["MLPConfig", "MoEConfig"]

Activation = Literal["silu", "gelu", "gelu_tanh", "relu", "squared_relu"]
"""Activation names: `gelu_tanh` is the tanh approximation (GPT-2's `gelu_new`), `squared_relu` is relu(x)**2."""

DEFAULT_INIT_STD = 0.02


def _normal(std: float) -> dict[str, Any]:
    return {"type": "normal", "std": std}


def _depth_scaled_normal(std: float) -> dict[str, Any]:
    return {"type": "depth_scaled_normal", "std": std}


def _linear_defaults(*, weight_initialization: Any) -> dict[str, Any]:
    return {
        "bias": False,
        "weight_initialization": weight_initialization,
        "bias_initialization": ZerosInitializationConfig(),
        "weight_decay": True,
        "apply_peft": False,
    }


class MLPConfig(FeedForwardConfig, type_name="mlp"):
    """Dense feed-forward layer: down(act(gate(x)) * up(x)) when gated, else down(act(up(x)))."""

    intermediate_size: int = Field(gt=0)
    """Width of the hidden layer (the output size of `gate` and `up`)."""
    gated: bool = True
    """Whether a `gate` projection multiplies the activated branch (GLU variants such as SwiGLU)."""
    activation: Activation = "silu"
    """Activation function: silu, gelu, gelu_tanh (tanh approximation), relu or squared_relu."""
    gate: LinearConfig = LinearConfig()
    """Gate projection, hidden -> intermediate; unused when `gated` is false."""
    up: LinearConfig = LinearConfig()
    """Up projection, hidden -> intermediate."""
    down: LinearConfig = LinearConfig()
    """Down projection, intermediate -> hidden (default init: depth-scaled normal)."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of every parameter of this layer; None means 1."""
    add_linear_biases: bool | None = None
    """Shortcut: the `bias` of every projection that does not set its own."""
    init_std: float | None = None
    """Shortcut: std of the default weight initializations (normal, depth-scaled for `down`)."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "add_linear_biases": {"gate.bias": None, "up.bias": None, "down.bias": None},
        "init_std": {
            "gate.weight_initialization": _normal,
            "up.weight_initialization": _normal,
            "down.weight_initialization": _depth_scaled_normal,
        },
    }

    @model_validator(mode="after")
    def _fill_linear_defaults(self):
        normal = NormalInitializationConfig(std=DEFAULT_INIT_STD)
        self._fill_defaults("gate", **_linear_defaults(weight_initialization=normal))
        self._fill_defaults("up", **_linear_defaults(weight_initialization=normal))
        depth_scaled = DepthScaledNormalInitializationConfig(std=DEFAULT_INIT_STD)
        self._fill_defaults("down", **_linear_defaults(weight_initialization=depth_scaled))
        return self

    def num_parameters(self, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
        """Return the number of parameters this layer has inside a stream of width `hidden_size`, LoRA adapters of `peft` included."""
        config = self.resolved
        projections = [(config.up, hidden_size, self.intermediate_size), (config.down, self.intermediate_size, hidden_size)]
        if self.gated:
            projections.append((config.gate, hidden_size, self.intermediate_size))
        return sum(linear.num_parameters(in_features=fan_in, out_features=fan_out, peft=peft) for linear, fan_in, fan_out in projections)


class MoEConfig(FeedForwardConfig, type_name="moe"):
    """Mixture of experts: a router sends each token to its top-k experts (Mixtral, Qwen2-MoE).

    Expert weights are stored batched, one (experts, out, in) tensor per projection.
    """

    experts: int = Field(gt=0)
    """Number of routed experts."""
    experts_per_token: int = Field(gt=0)
    """Number of experts each token is sent to (the k of top-k); at most `experts`."""
    intermediate_size: int = Field(gt=0)
    """Width of the hidden layer of each routed expert."""
    gated: bool = True
    """Whether each expert has a gate projection (SwiGLU experts), as in `mlp`."""
    activation: Activation = "silu"
    """Activation function of the experts: silu, gelu, gelu_tanh, relu or squared_relu."""
    router: LinearConfig = LinearConfig()
    """Router projection, hidden -> experts (default: no bias)."""
    gate: ParameterConfig = ParameterConfig()
    """Gate weights of the experts, shape (experts, intermediate, hidden); unused when not gated."""
    up: ParameterConfig = ParameterConfig()
    """Up weights of the experts, shape (experts, intermediate, hidden)."""
    down: ParameterConfig = ParameterConfig()
    """Down weights of the experts, shape (experts, hidden, intermediate) (default init: depth-scaled normal)."""
    normalize_top_k: bool = True
    """Whether the top-k routing probabilities are renormalized to sum to 1 (Mixtral: yes, Qwen2-MoE: no)."""
    shared_expert_intermediate_size: int | None = Field(None, ge=0)
    """Hidden width of a dense expert that every token passes through (Qwen2-MoE); None or 0 means none."""
    shared_expert_gate: bool = False
    """Whether the shared expert's output is scaled by sigmoid(linear(x)), a learned per-token gate (Qwen2-MoE)."""
    aux_loss_coefficient: float = Field(0.01, ge=0)
    """Weight of the load-balancing loss (Switch Transformer form: experts * sum(token fraction * mean probability)); 0 turns it off."""
    z_loss_coefficient: float = Field(0.0, ge=0)
    """Weight of the router z-loss (mean squared logsumexp of the router logits, ST-MoE); 0 turns it off."""
    lr_scale: float | None = Field(None, ge=0)
    """Multiplier of the learning rate of every parameter of this layer; None means 1."""
    init_std: float | None = None
    """Shortcut: std of the default initializations of the router and expert weights (depth-scaled for `down`)."""

    shortcuts: ClassVar[dict[str, Any]] = {
        "init_std": {
            "router.weight_initialization": _normal,
            "gate.initialization": _normal,
            "up.initialization": _normal,
            "down.initialization": _depth_scaled_normal,
        },
    }

    @model_validator(mode="after")
    def _check_and_fill_defaults(self):
        if self.experts_per_token > self.experts:
            raise field_error(
                "experts_per_token",
                "too_many_experts_per_token",
                f"must be at most experts={self.experts}; lower experts_per_token or add experts",
                self.experts_per_token,
            )
        if self.shared_expert_gate and not self.shared_expert_intermediate_size:
            raise field_error(
                "shared_expert_gate",
                "gate_without_shared_expert",
                "a shared expert gate needs a shared expert, but shared_expert_intermediate_size is "
                f"{self.shared_expert_intermediate_size}; set shared_expert_intermediate_size or drop the gate",
                self.shared_expert_gate,
            )
        normal = NormalInitializationConfig(std=DEFAULT_INIT_STD)
        depth_scaled = DepthScaledNormalInitializationConfig(std=DEFAULT_INIT_STD)
        self._fill_defaults("router", **_linear_defaults(weight_initialization=normal))
        self._fill_defaults("gate", initialization=normal, weight_decay=True)
        self._fill_defaults("up", initialization=normal, weight_decay=True)
        self._fill_defaults("down", initialization=depth_scaled, weight_decay=True)
        return self

    @property
    def has_shared_expert(self) -> bool:
        """Whether the layer has a shared expert."""
        return bool(self.shared_expert_intermediate_size)

    def shared_expert_config(self) -> MLPConfig | None:
        """Return the dense MLP config of the shared expert (None when there is none)."""
        if not self.has_shared_expert:
            return None
        return MLPConfig(
            intermediate_size=self.shared_expert_intermediate_size,
            gated=self.gated,
            activation=self.activation,
            init_std=self.init_std,
        )

    def num_parameters(self, *, hidden_size: int, peft: PeftConfig | None = None) -> int:
        """Return the number of parameters this layer has inside a stream of width `hidden_size`, LoRA adapters of `peft` included.

        Only the router and the shared expert can carry adapters: the batched expert weights
        are not linear layers, and the shared expert gate is built without peft.
        """
        config = self.resolved
        projections = 3 if self.gated else 2
        count = self.experts * projections * hidden_size * self.intermediate_size
        count += config.router.num_parameters(in_features=hidden_size, out_features=self.experts, peft=peft)
        shared = self.shared_expert_config()
        if shared is not None:
            count += shared.num_parameters(hidden_size=hidden_size, peft=peft)
        if self.shared_expert_gate:
            count += hidden_size
        return count
