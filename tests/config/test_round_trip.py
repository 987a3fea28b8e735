"""Round trip of randomly generated valid configs through YAML, minimal and resolved."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from toy_configs import ToyModelConfig

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
texts = st.text(max_size=12)

inits = st.one_of(
    st.none(),
    st.fixed_dictionaries({"type": st.just("toy_normal")}, optional={"std": finite_floats}),
    st.fixed_dictionaries({"type": st.just("toy_fill"), "value": finite_floats}),
    st.fixed_dictionaries({}, optional={"std": finite_floats}),
)
linears = st.fixed_dictionaries({}, optional={"bias": st.one_of(st.none(), st.booleans()), "init": inits})


@st.composite
def attentions(draw):
    heads = draw(st.integers(min_value=1, max_value=12))
    data = draw(st.fixed_dictionaries({}, optional={"query": linears, "output": linears, "add_biases": st.booleans()}))
    data["heads"] = heads
    if draw(st.booleans()):
        data["head_groups"] = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0]))
    if draw(st.booleans()):
        data["type"] = "toy_attention"
    return data


mambas = st.fixed_dictionaries(
    {"type": st.just("toy_mamba")}, optional={"state_size": st.integers(), "label": texts}
)
blocks = st.fixed_dictionaries(
    {},
    optional={
        "mixer": st.one_of(attentions(), mambas),
        "dropout": finite_floats,
        "activation": st.sampled_from(["silu", "gelu"]),
        "init_std": finite_floats,
    },
)
models = st.fixed_dictionaries(
    {},
    optional={
        "hidden_size": st.integers(min_value=-(2**63), max_value=2**63),
        "blocks": st.lists(blocks, max_size=3),
        "named": st.dictionaries(texts, blocks, max_size=3),
        "init_std": finite_floats,
    },
)


@settings(max_examples=150, deadline=None)
@given(models)
def test_round_trip_random_configs(data):
    config = ToyModelConfig.from_dict(data)

    minimal = ToyModelConfig.from_yaml(config.to_yaml())
    assert minimal == config
    assert minimal.to_dict() == config.to_dict()

    resolved = ToyModelConfig.from_yaml(config.to_yaml(resolved=True))
    assert resolved == config.resolved
    assert resolved.to_dict(resolved=True) == config.to_dict(resolved=True)
