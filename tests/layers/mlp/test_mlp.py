import pytest
import torch
import torch.nn.functional as F

import blockspec
from blockspec.build import build_module
from blockspec.layers.mlp.config import MLPConfig, MoEConfig
from blockspec.layers.mlp.module import load_balancing_loss, router_z_loss

HIDDEN = 16


def build(config, hidden_size=HIDDEN, seed=0, **build_args):
    with torch.device("meta"):
        module = build_module(config.resolved, hidden_size=hidden_size, **build_args)
    return blockspec.materialize(module, device="cpu", seed=seed)


def moe_config(**fields):
    return MoEConfig.from_dict({"experts": 4, "experts_per_token": 2, "intermediate_size": 12, **fields})


# --- mlp config ------------------------------------------------------------------------


def test_mlp_defaults_resolved():
    config = MLPConfig.from_dict({"intermediate_size": 32}).resolved
    assert config.gate.bias is False
    assert config.gate.weight_initialization.type_name == "normal"
    assert config.gate.weight_initialization.std == 0.02
    assert config.up.weight_initialization.type_name == "normal"
    assert config.down.weight_initialization.type_name == "depth_scaled_normal"
    assert config.down.weight_initialization.std == 0.02


def test_mlp_defaults_absent_from_to_dict():
    config = MLPConfig.from_dict({"intermediate_size": 32})
    assert config.to_dict() == {"type": "mlp", "intermediate_size": 32}


def test_mlp_shortcuts_expand():
    config = MLPConfig.from_dict({"intermediate_size": 32, "add_linear_biases": True, "init_std": 0.1, "down": {"bias": False}})
    assert config.gate.bias is True
    assert config.up.bias is True
    assert config.down.bias is False
    assert config.up.weight_initialization.std == 0.1
    assert config.down.weight_initialization.type_name == "depth_scaled_normal"
    assert config.down.weight_initialization.std == 0.1
    assert "add_linear_biases" not in config.to_dict()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"intermediate_size": 10}, 3 * 16 * 10),
        ({"intermediate_size": 10, "gated": False}, 2 * 16 * 10),
        ({"intermediate_size": 10, "add_linear_biases": True}, 3 * 16 * 10 + 10 + 10 + 16),
        ({"intermediate_size": 10, "gated": False, "up": {"bias": True}}, 2 * 16 * 10 + 10),
    ],
)
def test_mlp_num_parameters(fields, expected):
    config = MLPConfig.from_dict(fields)
    assert config.num_parameters(hidden_size=HIDDEN) == expected
    assert sum(parameter.numel() for parameter in build(config).parameters()) == expected


def test_mlp_unknown_activation_rejected():
    with pytest.raises(blockspec.ConfigError, match=r"activation: Input should be 'silu', 'gelu'"):
        MLPConfig.from_dict({"intermediate_size": 8, "activation": "swish"})


# --- mlp module ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "reference"),
    [
        ("silu", F.silu),
        ("gelu", F.gelu),
        ("gelu_tanh", lambda x: 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))),
        ("relu", F.relu),
        ("squared_relu", lambda x: F.relu(x) ** 2),
    ],
)
def test_mlp_forward_matches_formula(activation, reference):
    config = MLPConfig.from_dict({"intermediate_size": 24, "activation": activation, "add_linear_biases": True})
    mlp = build(config)
    x = torch.randn(2, 5, HIDDEN)
    gate = x @ mlp.gate.weight.T + mlp.gate.bias
    up = x @ mlp.up.weight.T + mlp.up.bias
    expected = (reference(gate) * up) @ mlp.down.weight.T + mlp.down.bias
    torch.testing.assert_close(mlp(x), expected, atol=1e-5, rtol=1e-5)


def test_mlp_not_gated_has_no_gate():
    mlp = build(MLPConfig.from_dict({"intermediate_size": 24, "gated": False, "activation": "relu"}))
    assert mlp.gate is None
    x = torch.randn(3, HIDDEN)
    torch.testing.assert_close(mlp(x), F.relu(x @ mlp.up.weight.T) @ mlp.down.weight.T)


def test_mlp_lr_scale_multiplies_down():
    config = MLPConfig.from_dict({"intermediate_size": 8, "lr_scale": 0.5, "down": {"lr_scale": 0.1}})
    mlp = build(config, lr_scale=2.0)
    assert blockspec.build.parameter_spec(mlp.up.weight).lr_scale == pytest.approx(1.0)
    assert blockspec.build.parameter_spec(mlp.down.weight).lr_scale == pytest.approx(0.1)


# --- moe config ------------------------------------------------------------------------


def test_moe_experts_per_token_above_experts_rejected():
    with pytest.raises(blockspec.ConfigError, match=r"experts_per_token: must be at most experts=4.*\[got 5\]"):
        moe_config(experts_per_token=5)


def test_moe_shared_gate_without_shared_expert_rejected():
    with pytest.raises(blockspec.ConfigError, match=r"shared_expert_gate: a shared expert gate needs a shared expert"):
        moe_config(shared_expert_gate=True)


def test_moe_inside_block_error_path():
    with pytest.raises(blockspec.ConfigError, match=r"transformer\.block\.mlp\.experts_per_token: must be at most"):
        blockspec.load_config(
            {
                "hidden_size": 8,
                "embeddings": {"vocab_size": 10},
                "transformer": {
                    "num_layers": 1,
                    "block": {"mixer": {"heads": 2}, "mlp": {"type": "moe", "experts": 2, "experts_per_token": 3, "intermediate_size": 4}},
                },
            }
        )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4 * 3 * 16 * 12 + 16 * 4),
        ({"gated": False}, 4 * 2 * 16 * 12 + 16 * 4),
        ({"router": {"bias": True}}, 4 * 3 * 16 * 12 + 16 * 4 + 4),
        ({"shared_expert_intermediate_size": 20, "shared_expert_gate": True}, 4 * 3 * 16 * 12 + 16 * 4 + 3 * 16 * 20 + 16),
        ({"shared_expert_intermediate_size": 0}, 4 * 3 * 16 * 12 + 16 * 4),
    ],
)
def test_moe_num_parameters(fields, expected):
    config = moe_config(**fields)
    assert config.num_parameters(hidden_size=HIDDEN) == expected
    assert sum(parameter.numel() for parameter in build(config).parameters()) == expected


def test_moe_expert_weights_batched():
    moe = build(moe_config())
    assert moe.gate_weight.shape == (4, 12, HIDDEN)
    assert moe.up_weight.shape == (4, 12, HIDDEN)
    assert moe.down_weight.shape == (4, HIDDEN, 12)
    spec = blockspec.build.parameter_spec(moe.down_weight)
    assert spec.initialization.type_name == "depth_scaled_normal"
    assert spec.fan_in == 12


# --- moe numerics ----------------------------------------------------------------------


def naive_moe(moe, x):
    """Route every token on its own, in a Python loop."""
    config = moe.config
    outputs = []
    for token in x.reshape(-1, x.shape[-1]):
        probabilities = torch.softmax(token @ moe.router.weight.T, dim=-1)
        weights, experts = torch.topk(probabilities, config.experts_per_token)
        if config.normalize_top_k:
            weights = weights / weights.sum()
        output = torch.zeros_like(token)
        for weight, expert in zip(weights, experts):
            hidden = F.silu(moe.gate_weight[expert] @ token) * (moe.up_weight[expert] @ token)
            output = output + weight * (moe.down_weight[expert] @ hidden)
        if moe.shared_expert is not None:
            shared = moe.shared_expert(token)
            if moe.shared_expert_gate is not None:
                shared = torch.sigmoid(moe.shared_expert_gate.weight @ token) * shared
            output = output + shared
        outputs.append(output)
    return torch.stack(outputs).reshape(x.shape)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"normalize_top_k": False},
        {"experts_per_token": 1},
        {"experts_per_token": 4},
        {"shared_expert_intermediate_size": 20, "shared_expert_gate": True, "normalize_top_k": False},
        {"shared_expert_intermediate_size": 20},
    ],
)
def test_moe_matches_per_token_loop(fields):
    moe = build(moe_config(**fields), seed=3)
    x = torch.randn(2, 7, HIDDEN)
    torch.testing.assert_close(moe(x), naive_moe(moe, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fields", [{}, {"gated": False, "experts_per_token": 1}, {"normalize_top_k": False}])
def test_moe_every_expert_matches_routed(fields):
    moe = build(moe_config(**fields), seed=3)
    tokens = torch.randn(14, HIDDEN)
    weights, selected = moe.route(moe.router(tokens))

    dense = moe._run_every_expert(tokens, weights, selected)

    torch.testing.assert_close(dense, moe._run_experts(tokens, weights, selected), atol=1e-6, rtol=1e-5)


def test_moe_forward_on_meta():
    with torch.device("meta"):
        moe = build_module(moe_config(shared_expert_intermediate_size=20, z_loss_coefficient=0.1).resolved, hidden_size=HIDDEN)

    output = moe(torch.empty(2, 7, HIDDEN, device="meta"))

    assert output.is_meta
    assert output.shape == (2, 7, HIDDEN)
    assert set(moe.aux_losses) == {"load_balancing", "router_z"}


def test_moe_lm_forward_on_meta():
    config = blockspec.load_config(
        """
        type: lm
        hidden_size: 16
        embeddings: {vocab_size: 32}
        transformer:
          num_layers: 2
          block: {mixer: {heads: 2}, mlp: {type: moe, experts: 4, experts_per_token: 2, intermediate_size: 8}}
        """
    )
    model = config.build(device="meta")
    input_ids = torch.zeros(2, 5, dtype=torch.long, device="meta")

    output = model(input_ids, labels=input_ids)

    assert output.logits.shape == (2, 5, 32)
    assert output.loss.is_meta


def test_moe_matches_transformers_mixtral_block():
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    moe = build(moe_config(), seed=1)
    reference = MixtralSparseMoeBlock(
        MixtralConfig(hidden_size=HIDDEN, intermediate_size=12, num_local_experts=4, num_experts_per_tok=2)
    ).eval()
    with torch.no_grad():
        reference.gate.weight.copy_(moe.router.weight)
        reference.experts.gate_up_proj.copy_(torch.cat([moe.gate_weight, moe.up_weight], dim=1))
        reference.experts.down_proj.copy_(moe.down_weight)
    x = torch.randn(2, 9, HIDDEN)
    torch.testing.assert_close(moe(x), reference(x), atol=1e-5, rtol=1e-4)


def test_moe_matches_transformers_qwen2_moe_block():
    from transformers import Qwen2MoeConfig
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    config = moe_config(normalize_top_k=False, shared_expert_intermediate_size=20, shared_expert_gate=True)
    moe = build(config, seed=2)
    reference = Qwen2MoeSparseMoeBlock(
        Qwen2MoeConfig(
            hidden_size=HIDDEN,
            moe_intermediate_size=12,
            shared_expert_intermediate_size=20,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=False,
        )
    ).eval()
    with torch.no_grad():
        reference.gate.weight.copy_(moe.router.weight)
        reference.experts.gate_up_proj.copy_(torch.cat([moe.gate_weight, moe.up_weight], dim=1))
        reference.experts.down_proj.copy_(moe.down_weight)
        reference.shared_expert.gate_proj.weight.copy_(moe.shared_expert.gate.weight)
        reference.shared_expert.up_proj.weight.copy_(moe.shared_expert.up.weight)
        reference.shared_expert.down_proj.weight.copy_(moe.shared_expert.down.weight)
        reference.shared_expert_gate.weight.copy_(moe.shared_expert_gate.weight)
    x = torch.randn(2, 9, HIDDEN)
    torch.testing.assert_close(moe(x), reference(x), atol=1e-5, rtol=1e-4)


def test_moe_load_balancing_matches_transformers():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    moe = build(moe_config(aux_loss_coefficient=0.02), seed=4)
    x = torch.randn(3, 8, HIDDEN)
    moe(x)
    router_logits = moe.router(x.reshape(-1, HIDDEN))
    expected = load_balancing_loss_func((router_logits,), num_experts=4, top_k=2)
    torch.testing.assert_close(moe.aux_losses["load_balancing"], 0.02 * expected)


def test_moe_load_balancing_uniform_is_one():
    # Every expert gets a quarter of the tokens and mean probability 1/4, so the loss is 4 * (4 * 1/4 * 1/4).
    logits = torch.zeros(8, 4)
    selected = torch.arange(8).remainder(4)[:, None]
    assert load_balancing_loss(logits, selected, 4).item() == pytest.approx(1.0)


def test_moe_z_loss_value():
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    expected = (torch.logsumexp(logits, dim=-1) ** 2).mean()
    torch.testing.assert_close(router_z_loss(logits), expected)


def test_moe_aux_losses_differentiable():
    moe = build(moe_config(aux_loss_coefficient=0.1, z_loss_coefficient=0.01), seed=5)
    moe(torch.randn(2, 6, HIDDEN))
    assert set(moe.aux_losses) == {"load_balancing", "router_z"}
    total = sum(moe.aux_losses.values())
    total.backward()
    assert moe.router.weight.grad is not None
    assert moe.router.weight.grad.abs().sum() > 0


def test_moe_zero_coefficients_no_aux_losses():
    moe = build(moe_config(aux_loss_coefficient=0.0), seed=5)
    moe(torch.randn(1, 3, HIDDEN))
    assert moe.aux_losses == {}


def test_moe_gradients_reach_experts():
    moe = build(moe_config(experts_per_token=4), seed=6)
    moe(torch.randn(2, 5, HIDDEN)).square().sum().backward()
    for name, parameter in moe.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
