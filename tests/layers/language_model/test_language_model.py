import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F

import blockspec
from blockspec.generation import KVCache
from blockspec.layers.language_model.config import LanguageModelConfig

VOCAB = 64
HIDDEN = 32


def lm_dict(**fields):
    block = {
        "mixer": {"heads": 4, "head_groups": 2, "rotary": {"type": "default", "theta": 10000.0}},
        "mlp": {"intermediate_size": 48},
    }
    transformer = fields.pop("transformer", {"num_layers": 2, "block": block})
    return {"hidden_size": HIDDEN, "embeddings": {"vocab_size": VOCAB}, "transformer": transformer, **fields}


def lm(**fields):
    return LanguageModelConfig.from_dict(lm_dict(**fields))


def tokens(batch=2, seq=7, seed=0):
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


# --- config ----------------------------------------------------------------------------


def test_defaults_resolved():
    config = lm().resolved
    assert config.embeddings.word_weight.initialization.std == 0.02
    assert config.head.output_weight.initialization.type_name == "normal"
    assert config.head.normalization.type_name == "rms_norm"
    assert config.peft.type_name == "none"


def test_init_std_reaches_every_default():
    config = lm(init_std=0.1)
    assert config.embeddings.word_weight.initialization.std == 0.1
    assert config.head.output_weight.initialization.std == 0.1
    block = config.transformer.block
    assert block.mixer.query.weight_initialization.std == 0.1
    assert block.mlp.down.weight_initialization.type_name == "depth_scaled_normal"
    assert block.mlp.down.weight_initialization.std == 0.1
    assert "init_std" not in config.to_dict()


def test_init_std_tied_leaves_head_unset():
    config = lm(init_std=0.1, tied_embeddings=True)
    assert config.head.output_weight.initialization is None
    assert config.embeddings.word_weight.initialization.std == 0.1


def test_tied_with_output_weight_rejected():
    with pytest.raises(blockspec.ConfigError, match=r"head\.output_weight: must stay unset because with tied_embeddings"):
        lm(tied_embeddings=True, head={"output_weight": {"lr_scale": 0.5}})


def test_transformer_hidden_size_mismatch_rejected():
    config = lm_dict()
    config["transformer"]["hidden_size"] = 16
    with pytest.raises(blockspec.ConfigError, match=r"transformer\.hidden_size: differs from the model's hidden_size=32.*\[got 16\]"):
        LanguageModelConfig.from_dict(config)


def test_unknown_key_rejected_with_suggestion():
    with pytest.raises(blockspec.ConfigError, match=r"tied_embedding'.*Did you mean 'tied_embeddings'\?"):
        lm(tied_embedding=True)


@pytest.mark.parametrize(
    ("fields", "extra"),
    [
        ({}, VOCAB * HIDDEN),
        ({"tied_embeddings": True}, 0),
    ],
)
def test_num_parameters_tied_once(fields, extra):
    config = lm(**fields)
    block = 2 * HIDDEN * (4 * 8) + 2 * HIDDEN * (2 * 8) + 3 * HIDDEN * 48 + 2 * HIDDEN
    expected = VOCAB * HIDDEN + 2 * block + HIDDEN + extra
    assert config.num_parameters() == expected
    model = config.build(device="meta")
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


# --- forward ---------------------------------------------------------------------------


def test_forward_shapes_and_loss():
    model = lm().build(seed=0)
    input_ids = tokens()
    output = model(input_ids, labels=input_ids)
    assert output.logits.shape == (2, 7, VOCAB)
    expected = F.cross_entropy(output.logits[:, :-1].reshape(-1, VOCAB), input_ids[:, 1:].reshape(-1))
    torch.testing.assert_close(output.loss, expected)
    assert output.aux_losses == {}
    assert model(input_ids).loss is None


def test_loss_ignores_minus_100():
    model = lm().build(seed=0)
    input_ids = tokens()
    labels = input_ids.clone()
    labels[:, :4] = -100
    logits = model(input_ids).logits
    unmasked = F.cross_entropy(logits[:, 3:-1].reshape(-1, VOCAB), labels[:, 4:].reshape(-1))
    torch.testing.assert_close(model(input_ids, labels=labels).loss, unmasked)


@pytest.mark.parametrize(
    ("input_ids", "labels"),
    [
        (tokens(), torch.full((2, 7), -100)),
        (tokens(seq=1), tokens(seq=1)),
        (tokens(), torch.cat((tokens(seq=1), torch.full((2, 6), -100)), dim=1)),
    ],
    ids=["all_ignored", "one_token", "only_first_label"],
)
def test_loss_without_targets_is_zero(input_ids, labels):
    model = lm().build(seed=0)

    loss = model(input_ids, labels=labels).loss
    loss.backward()

    assert loss.item() == 0.0
    assert model.head.output_weight.grad is not None
    assert model.head.output_weight.grad.abs().sum() == 0


def test_loss_without_targets_keeps_aux_losses():
    moe = {"type": "moe", "experts": 4, "experts_per_token": 2, "intermediate_size": 16}
    model = lm(transformer={"num_layers": 2, "block": {"mixer": {"heads": 4}, "mlp": moe}}).build(seed=0)
    input_ids = tokens()

    output = model(input_ids, labels=torch.full_like(input_ids, -100))

    assert output.aux_losses["load_balancing"] > 0
    torch.testing.assert_close(output.loss, output.aux_losses["load_balancing"])


def test_initial_loss_near_uniform():
    model = lm().build(seed=0)
    input_ids = tokens(batch=4, seq=16)
    assert abs(model(input_ids, labels=input_ids).loss.item() - math.log(VOCAB)) < 0.1


def test_tied_weight_is_embedding_parameter():
    model = lm(tied_embeddings=True).build(seed=0)
    assert model.head.output_weight is model.embeddings.word_weight
    input_ids = tokens()
    model(input_ids, labels=input_ids).loss.backward()
    assert model.embeddings.word_weight.grad is not None


def test_gradients_reach_every_parameter():
    model = lm(head={"normalization": {"type": "layer_norm"}}).build(seed=0)
    input_ids = tokens()
    model(input_ids, labels=input_ids).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_logit_soft_cap_and_scale():
    plain = lm().build(seed=0)
    capped = lm(head={"logit_soft_cap": 0.5, "logits_scale": 4.0}).build(seed=0)
    input_ids = tokens()
    expected = 0.5 * torch.tanh(plain(input_ids).logits * 4.0 / 0.5)
    torch.testing.assert_close(capped(input_ids).logits, expected)
    assert capped(input_ids).logits.abs().max() < 0.5


def test_embedding_scale():
    model = lm(embeddings={"vocab_size": VOCAB, "scale": HIDDEN**0.5}).build(seed=0)
    input_ids = tokens()
    expected = F.embedding(input_ids, model.embeddings.word_weight) * HIDDEN**0.5
    torch.testing.assert_close(model.embeddings(input_ids, positions=torch.arange(7)), expected)


def test_embedding_scale_rounded_to_dtype():
    model = lm(embeddings={"vocab_size": VOCAB, "scale": HIDDEN**0.5}).build(seed=0, dtype=torch.bfloat16)
    input_ids = tokens()
    scale = torch.tensor(HIDDEN**0.5, dtype=torch.bfloat16)
    expected = F.embedding(input_ids, model.embeddings.word_weight) * scale
    assert torch.equal(model.embeddings(input_ids, positions=torch.arange(7)), expected)


def test_labels_shape_mismatch_rejected():
    model = lm().build(device="meta")
    with pytest.raises(ValueError, match=r"labels must have the shape of input_ids \(2, 7\), got \(2, 6\)"):
        model(tokens(), labels=tokens(seq=6))


def test_position_embeddings():
    model = lm(embeddings={"vocab_size": VOCAB, "position_embeddings": 8}).build(seed=0)
    assert model.embeddings.position_weight.shape == (8, HIDDEN)
    input_ids = tokens(seq=8)
    expected = model.embeddings.word_weight[input_ids] + model.embeddings.position_weight[:8]
    torch.testing.assert_close(model.embeddings(input_ids, positions=torch.arange(8)), expected)
    with pytest.raises(ValueError, match=r"position 8 is beyond the 8 learned position embeddings"):
        model(tokens(seq=9))


def test_moe_aux_losses_summed_into_loss():
    moe = {"type": "moe", "experts": 4, "experts_per_token": 2, "intermediate_size": 16, "aux_loss_coefficient": 0.1, "z_loss_coefficient": 0.01}
    block = {"mixer": {"heads": 4}, "mlp": moe}
    model = lm(transformer={"num_layers": 2, "block": block}).build(seed=0)
    input_ids = tokens()
    output = model(input_ids, labels=input_ids)
    assert set(output.aux_losses) == {"load_balancing", "router_z"}
    per_layer = [layer.mlp.aux_losses["load_balancing"] for layer in model.transformer.layers]
    torch.testing.assert_close(output.aux_losses["load_balancing"], per_layer[0] + per_layer[1])
    cross_entropy = F.cross_entropy(output.logits[:, :-1].reshape(-1, VOCAB), input_ids[:, 1:].reshape(-1))
    torch.testing.assert_close(output.loss, cross_entropy + output.aux_losses["load_balancing"] + output.aux_losses["router_z"])
    output.aux_losses["load_balancing"].backward()
    assert model.transformer.layers[0].mlp.router.weight.grad.abs().sum() > 0


def test_full_precision_residual_bfloat16():
    config = lm(full_precision_residual=True)
    model = config.build(seed=0, dtype=torch.bfloat16)
    assert model.embeddings.word_weight.dtype == torch.bfloat16
    input_ids = tokens()
    output = model(input_ids, labels=input_ids)
    assert output.logits.dtype == torch.bfloat16
    reference = lm().build(seed=0)(input_ids).logits
    torch.testing.assert_close(output.logits.float(), reference, atol=0.05, rtol=0.05)


def test_lora_trains_only_adapters():
    model = lm(peft={"type": "lora", "rank": 2}).build(seed=0)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable
    assert all("lora_" in name for name in trainable)
    assert "transformer.layers.0.mixer.query.lora_a" in trainable
    input_ids = tokens()
    model(input_ids, labels=input_ids).loss.backward()
    assert model.transformer.layers[1].mixer.value.lora_a.grad is not None


def test_lr_scale_multiplies_down():
    config = lm(lr_scale=0.5, embeddings={"vocab_size": VOCAB, "lr_scale": 0.2}, head={"lr_scale": 4.0})
    model = config.build(device="meta")
    spec = blockspec.build.parameter_spec
    assert spec(model.embeddings.word_weight).lr_scale == pytest.approx(0.1)
    assert spec(model.head.output_weight).lr_scale == pytest.approx(2.0)
    assert spec(model.transformer.layers[0].mlp.up.weight).lr_scale == pytest.approx(0.5)


# --- KV cache --------------------------------------------------------------------------


def test_cache_matches_full_forward_with_shared_blocks():
    local = {"mixer": {"heads": 4, "head_groups": 2, "window_size": 3, "rotary": {"type": "default"}}, "mlp": {"intermediate_size": 48}}
    full = {"mixer": {"heads": 4, "head_groups": 2, "rotary": {"type": "default"}}, "mlp": {"intermediate_size": 48}}
    transformer = {"num_layers": 4, "blocks": {"local": local, "full": full}, "pattern": ["local", "full"], "shared_blocks": ["full"]}
    model = lm(transformer=transformer).build(seed=0).eval()
    assert model.transformer.layers[1] is model.transformer.layers[3]
    input_ids = tokens(batch=1, seq=9)
    expected = model(input_ids).logits

    cache = KVCache()
    steps = [model(input_ids[:, :5], cache=cache).logits]
    for position in range(5, 9):
        steps.append(model(input_ids[:, position : position + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=1e-4)
    assert cache.length == 9
    assert len(cache) == 4


# --- comparison with transformers ------------------------------------------------------


LLAMA_NORMS = {"mixer_normalization": "input_layernorm", "mlp_normalization": "post_attention_layernorm"}


def copy_llama_weights(model, reference, *, moe=False, norms=LLAMA_NORMS):
    """Copy our weights into a transformers Llama-family model (names as in transformers 5).

    `norms` maps our block normalization attributes to the transformers names.
    """
    pairs = {
        "model.embed_tokens.weight": model.embeddings.word_weight,
        "model.norm.weight": model.head.normalization.weight,
        "lm_head.weight": model.head.output_weight,
    }
    for index, layer in enumerate(model.transformer.layers):
        prefix = f"model.layers.{index}."
        for ours, theirs in norms.items():
            pairs[prefix + f"{theirs}.weight"] = getattr(layer, ours).weight
        for ours, theirs in [("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), ("output", "o_proj")]:
            linear = getattr(layer.mixer, ours)
            pairs[prefix + f"self_attn.{theirs}.weight"] = linear.weight
            if linear.bias is not None:
                pairs[prefix + f"self_attn.{theirs}.bias"] = linear.bias
        if layer.mixer.query_norm is not None:
            pairs[prefix + "self_attn.q_norm.weight"] = layer.mixer.query_norm.weight
            pairs[prefix + "self_attn.k_norm.weight"] = layer.mixer.key_norm.weight
        if moe:
            pairs[prefix + "mlp.gate.weight"] = layer.mlp.router.weight
            pairs[prefix + "mlp.experts.gate_up_proj"] = torch.cat([layer.mlp.gate_weight, layer.mlp.up_weight], dim=1)
            pairs[prefix + "mlp.experts.down_proj"] = layer.mlp.down_weight
        else:
            for name in ("gate", "up", "down"):
                pairs[prefix + f"mlp.{name}_proj.weight"] = getattr(layer.mlp, name).weight
    state = reference.state_dict()
    assert set(state) == set(pairs), set(state) ^ set(pairs)
    reference.load_state_dict({name: tensor.detach() for name, tensor in pairs.items()})


def assert_same_logits(model, reference):
    input_ids = tokens(batch=2, seq=12)
    expected = reference(input_ids).logits
    torch.testing.assert_close(model(input_ids).logits, expected, atol=1e-4, rtol=1e-4)


def tiny_reference(config_class, model_class, **fields):
    common = {"hidden_size": HIDDEN, "intermediate_size": 48, "num_hidden_layers": 2, "vocab_size": VOCAB}
    config = config_class(**common, **fields)
    config._attn_implementation = "eager"
    return model_class(config).eval()


def test_llama_matches_transformers():
    from transformers import LlamaConfig, LlamaForCausalLM

    rotary = {"type": "llama3", "theta": 500000.0, "factor": 8.0, "original_context_length": 16}
    block = {"mixer": {"heads": 4, "head_groups": 2, "rotary": rotary}, "mlp": {"intermediate_size": 48}, "normalization": {"epsilon": 1e-5}}
    model = lm(transformer={"num_layers": 2, "block": block}).build(seed=0).eval()
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    reference = tiny_reference(
        LlamaConfig, LlamaForCausalLM, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_parameters=rope, tie_word_embeddings=False
    )
    copy_llama_weights(model, reference)
    assert_same_logits(model, reference)


def test_qwen3_matches_transformers():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    norm = {"type": "rms_norm", "epsilon": 1e-6}
    mixer = {"heads": 4, "head_groups": 2, "head_size": 16, "query_norm": norm, "key_norm": norm, "rotary": {"type": "default", "theta": 1000000.0}}
    block = {"mixer": mixer, "mlp": {"intermediate_size": 48}, "normalization": norm}
    model = lm(transformer={"num_layers": 2, "block": block}, tied_embeddings=True, head={"normalization": norm}).build(seed=0).eval()
    reference = tiny_reference(
        Qwen3Config,
        Qwen3ForCausalLM,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=True,
    )
    copy_llama_weights(model, reference)
    assert_same_logits(model, reference)


def test_qwen2_biases_match_transformers():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    mixer = {"heads": 4, "head_groups": 2, "query": {"bias": True}, "key": {"bias": True}, "value": {"bias": True}, "rotary": {"type": "default", "theta": 1000000.0}}
    block = {"mixer": mixer, "mlp": {"intermediate_size": 48}, "normalization": {"epsilon": 1e-6}}
    model = lm(transformer={"num_layers": 2, "block": block}, head={"normalization": {"epsilon": 1e-6}}).build(seed=0).eval()
    with torch.no_grad():
        for layer in model.transformer.layers:
            for linear in (layer.mixer.query, layer.mixer.key, layer.mixer.value):
                linear.bias.normal_()
    reference = tiny_reference(
        Qwen2Config,
        Qwen2ForCausalLM,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
    )
    copy_llama_weights(model, reference)
    assert_same_logits(model, reference)


def test_mixtral_matches_transformers():
    from transformers import MixtralConfig, MixtralForCausalLM

    moe = {"type": "moe", "experts": 4, "experts_per_token": 2, "intermediate_size": 48}
    block = {"mixer": {"heads": 4, "head_groups": 2, "rotary": {"type": "default", "theta": 1000000.0}}, "mlp": moe}
    model = lm(transformer={"num_layers": 2, "block": block}).build(seed=0).eval()
    reference = tiny_reference(
        MixtralConfig,
        MixtralForCausalLM,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    copy_llama_weights(model, reference, moe=True)
    assert_same_logits(model, reference)


def test_gpt2_matches_transformers():
    from transformers import GPT2Config, GPT2LMHeadModel

    block = {
        "add_linear_biases": True,
        "mixer": {"heads": 4},
        "mlp": {"intermediate_size": 4 * HIDDEN, "gated": False, "activation": "gelu_tanh"},
        "normalization": {"type": "layer_norm"},
    }
    config = lm(
        transformer={"num_layers": 2, "block": block},
        embeddings={"vocab_size": VOCAB, "position_embeddings": 16},
        head={"normalization": {"type": "layer_norm"}},
        tied_embeddings=True,
    )
    model = config.build(seed=0).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(std=0.1)
    reference_config = GPT2Config(n_embd=HIDDEN, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=16, bos_token_id=0, eos_token_id=0)
    reference_config._attn_implementation = "eager"
    reference = GPT2LMHeadModel(reference_config).eval()

    pairs = {
        "transformer.wte.weight": model.embeddings.word_weight,
        "transformer.wpe.weight": model.embeddings.position_weight,
        "transformer.ln_f.weight": model.head.normalization.weight,
        "transformer.ln_f.bias": model.head.normalization.bias,
        "lm_head.weight": model.head.output_weight,
    }
    for index, layer in enumerate(model.transformer.layers):
        prefix = f"transformer.h.{index}."
        attention, mlp = layer.mixer, layer.mlp
        # GPT-2's Conv1D stores weights as (in, out), the transpose of a linear weight.
        pairs[prefix + "attn.c_attn.weight"] = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]).T
        pairs[prefix + "attn.c_attn.bias"] = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
        pairs[prefix + "attn.c_proj.weight"] = attention.output.weight.T
        pairs[prefix + "attn.c_proj.bias"] = attention.output.bias
        pairs[prefix + "mlp.c_fc.weight"] = mlp.up.weight.T
        pairs[prefix + "mlp.c_fc.bias"] = mlp.up.bias
        pairs[prefix + "mlp.c_proj.weight"] = mlp.down.weight.T
        pairs[prefix + "mlp.c_proj.bias"] = mlp.down.bias
        for ours, theirs in [("mixer_normalization", "ln_1"), ("mlp_normalization", "ln_2")]:
            pairs[prefix + f"{theirs}.weight"] = getattr(layer, ours).weight
            pairs[prefix + f"{theirs}.bias"] = getattr(layer, ours).bias
    reference.load_state_dict({name: tensor.detach().contiguous() for name, tensor in pairs.items()}, strict=False)
    missing = set(reference.state_dict()) - set(pairs)
    assert all(name.endswith((".attn.bias", ".attn.masked_bias")) for name in missing), missing
    assert_same_logits(model, reference)


# --- parameter counts of random configs ------------------------------------------------


@st.composite
def random_lm(draw):
    def norm():
        return draw(st.sampled_from([{"type": "rms_norm"}, {"type": "layer_norm"}, {"type": "layer_norm", "bias": False}, {"type": "none"}]))

    def block():
        heads = draw(st.sampled_from([2, 4]))
        mixer = {"heads": heads, "head_groups": draw(st.sampled_from([1, heads])), "add_linear_biases": draw(st.booleans())}
        if draw(st.booleans()):
            mixer["head_size"] = 6
            mixer["query_norm"] = norm()
            mixer["key_norm"] = norm()
            mixer["qk_norm_per_head"] = draw(st.booleans())
        if draw(st.booleans()):
            mlp = {"intermediate_size": draw(st.integers(1, 20)), "gated": draw(st.booleans()), "add_linear_biases": draw(st.booleans())}
        else:
            experts = draw(st.integers(1, 4))
            mlp = {"type": "moe", "experts": experts, "experts_per_token": draw(st.integers(1, experts)), "intermediate_size": 5}
            mlp["shared_expert_intermediate_size"] = draw(st.sampled_from([None, 0, 7]))
            mlp["shared_expert_gate"] = bool(mlp["shared_expert_intermediate_size"]) and draw(st.booleans())
        fields = {"mixer": mixer, "mlp": mlp, "normalization": norm()}
        if draw(st.booleans()):
            fields["post_mixer_normalization"] = norm()
        return fields

    names = ["a", "b", "c"][: draw(st.integers(1, 3))]
    repeats = draw(st.integers(1, 2))
    transformer = {"num_layers": len(names) * repeats, "blocks": {name: block() for name in names}, "pattern": names}
    transformer["shared_blocks"] = draw(st.lists(st.sampled_from(names), unique=True))
    embeddings = {"vocab_size": draw(st.integers(1, 50)), "position_embeddings": draw(st.sampled_from([None, 9]))}
    return {
        "hidden_size": 12,
        "tied_embeddings": draw(st.booleans()),
        "embeddings": embeddings,
        "transformer": transformer,
        "head": {"normalization": norm()},
    }


@settings(max_examples=40, deadline=None)
@given(random_lm())
def test_num_parameters_matches_build(data):
    config = LanguageModelConfig.from_dict(data)
    model = config.build(device="meta")
    assert config.num_parameters() == sum(parameter.numel() for parameter in model.parameters())


def randomize_norm_weights(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "normalization" in name or "_norm." in name:
                parameter.normal_(std=0.2)


def test_gemma2_matches_transformers():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    norm = {"type": "rms_norm", "epsilon": 1e-6, "zero_centered": True}
    attention = {"heads": 4, "head_groups": 2, "head_size": 8, "softmax_scale": 256**-0.5, "soft_cap": 50.0, "rotary": {"type": "default"}}
    mlp = {"intermediate_size": 48, "activation": "gelu_tanh"}
    block = {"mlp": mlp, "normalization": norm, "post_mixer_normalization": norm, "post_mlp_normalization": norm}
    transformer = {
        "num_layers": 2,
        "blocks": {"local": {**block, "mixer": {**attention, "window_size": 4}}, "global": {**block, "mixer": attention}},
        "pattern": ["local", "global"],
    }
    config = lm(
        transformer=transformer,
        tied_embeddings=True,
        embeddings={"vocab_size": VOCAB, "scale": HIDDEN**0.5},
        head={"normalization": norm, "logit_soft_cap": 30.0},
    )
    model = config.build(seed=0).eval()
    randomize_norm_weights(model)
    reference = tiny_reference(
        Gemma2Config,
        Gemma2ForCausalLM,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
    )
    norms = {
        "mixer_normalization": "input_layernorm",
        "post_mixer_normalization": "post_attention_layernorm",
        "mlp_normalization": "pre_feedforward_layernorm",
        "post_mlp_normalization": "post_feedforward_layernorm",
    }
    copy_llama_weights(model, reference, norms=norms)
    assert_same_logits(model, reference)


def test_olmo2_post_norms_match_transformers():
    from transformers import Olmo2Config, Olmo2ForCausalLM

    norm = {"type": "rms_norm", "epsilon": 1e-6}
    mixer = {"heads": 4, "head_groups": 2, "query_norm": norm, "key_norm": norm, "qk_norm_per_head": False, "rotary": {"type": "default"}}
    block = {
        "mixer": mixer,
        "mlp": {"intermediate_size": 48},
        "normalization": {"type": "none"},
        "post_mixer_normalization": norm,
        "post_mlp_normalization": norm,
    }
    model = lm(transformer={"num_layers": 2, "block": block}, head={"normalization": norm}).build(seed=0).eval()
    randomize_norm_weights(model)
    reference = tiny_reference(Olmo2Config, Olmo2ForCausalLM, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6)
    norms = {"post_mixer_normalization": "post_attention_layernorm", "post_mlp_normalization": "post_feedforward_layernorm"}
    copy_llama_weights(model, reference, norms=norms)
    assert_same_logits(model, reference)


def test_loss_accepts_int32_labels():
    model = lm().build(seed=0)
    input_ids = tokens()
    expected = model(input_ids, labels=input_ids).loss
    actual = model(input_ids.int(), labels=input_ids.int()).loss
    torch.testing.assert_close(actual, expected)


def test_lm_forward_on_meta_with_rotary():
    model = lm().build(device="meta")
    output = model(torch.zeros(2, 5, dtype=torch.long, device="meta"))
    assert output.logits.is_meta
    assert output.logits.shape == (2, 5, VOCAB)


@pytest.mark.parametrize("dtype", ["int8", torch.int64, "bf16"])
def test_build_rejects_non_float_dtype(dtype):
    with pytest.raises(ValueError, match="dtype"):
        lm().build(dtype=dtype)


def test_lm_forward_on_meta_with_learned_positions():
    model = lm(embeddings={"vocab_size": VOCAB, "position_embeddings": 16}).build(device="meta")
    output = model(torch.zeros(1, 5, dtype=torch.long, device="meta"))
    assert output.logits.shape == (1, 5, VOCAB)
