"""Config base: families, late registration, parent defaults, shortcuts, serialization."""

from __future__ import annotations

import pytest
from pydantic import ValidationError, model_validator
from toy_configs import (
    ToyAttentionConfig,
    ToyBlockConfig,
    ToyFillConfig,
    ToyLinearConfig,
    ToyMambaConfig,
    ToyMixerConfig,
    ToyModelConfig,
    ToyNormalConfig,
)

from blockspec.config import Config, ConfigError


def test_config_frozen_after_validation():
    config = ToyAttentionConfig.from_dict({"heads": 4})
    with pytest.raises(ValidationError, match="frozen"):
        config.heads = 8
    assert config.heads == 4


def test_config_rejects_unknown_key():
    with pytest.raises(ConfigError, match=r"mixer\.haeds: unknown key 'haeds'.*Did you mean 'heads'\?"):
        ToyBlockConfig.from_dict({"mixer": {"haeds": 4}})


def test_family_default_type_when_type_omitted():
    block = ToyBlockConfig.from_dict({"mixer": {"heads": 2}})
    assert type(block.mixer) is ToyAttentionConfig
    assert block.mixer.heads == 2


def test_family_selects_subclass_by_type():
    block = ToyBlockConfig.from_dict({"mixer": {"type": "toy_mamba", "state_size": 4}})
    assert type(block.mixer) is ToyMambaConfig
    assert block.mixer.state_size == 4


def test_family_accepts_late_registration():
    class LateMixerConfig(ToyMixerConfig, type_name="toy_late"):
        width: int = 3

    block = ToyBlockConfig.from_dict({"mixer": {"type": "toy_late", "width": 5}})
    assert type(block.mixer) is LateMixerConfig
    assert block.to_dict() == {"mixer": {"type": "toy_late", "width": 5}}


def test_family_unknown_type_lists_names_and_suggests():
    with pytest.raises(ConfigError) as raised:
        ToyBlockConfig.from_dict({"mixer": {"type": "toy_atention"}})
    (issue,) = raised.value.issues
    assert issue.path == "mixer.type"
    assert issue.value == "toy_atention"
    assert "Did you mean 'toy_attention'?" in issue.message
    assert "registered types: toy_attention, " in issue.message
    assert "toy_mamba" in issue.message


def test_family_never_imports_dotted_type(monkeypatch):
    imported = []
    monkeypatch.setattr("builtins.__import__", _recording_import(imported))
    with pytest.raises(ConfigError, match="unknown toy_mixer type 'os.path.join'"):
        ToyBlockConfig.from_dict({"mixer": {"type": "os.path.join"}})
    assert "os.path" not in imported


def _recording_import(imported):
    import builtins

    original = builtins.__import__

    def record(name, *args, **kwargs):
        imported.append(name)
        return original(name, *args, **kwargs)

    return record


def test_family_rejects_type_of_other_family():
    with pytest.raises(ConfigError, match=r"mixer\.type: unknown toy_mixer type 'toy_fill'"):
        ToyBlockConfig.from_dict({"mixer": {"type": "toy_fill", "value": 1.0}})


def test_family_field_of_concrete_class_rejects_sibling_type():
    with pytest.raises(ConfigError, match="registered types: toy_attention"):
        ToyAttentionConfig.from_dict({"type": "toy_mamba"})


def test_family_type_name_clash_rejected():
    with pytest.raises(TypeError, match="already registered by toy_configs.ToyMambaConfig"):

        class OtherMambaConfig(ToyMixerConfig, type_name="toy_mamba"):
            pass


def test_family_plugin_loaded_from_entry_point(monkeypatch, tmp_path):
    plugin = tmp_path / "toy_plugin_module.py"
    plugin.write_text(
        "from toy_configs import ToyMixerConfig\n"
        "class PluginMixerConfig(ToyMixerConfig, type_name='toy_plugin'):\n"
        "    depth: int = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_point = _entry_point("toy_plugin", "toy_plugin_module")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [entry_point] if group == "blockspec.plugins" else [])
    block = ToyBlockConfig.from_dict({"mixer": {"type": "toy_plugin", "depth": 3}})
    assert type(block.mixer).__name__ == "PluginMixerConfig"
    assert block.mixer.depth == 3


def _entry_point(name, value):
    from importlib.metadata import EntryPoint

    return EntryPoint(name=name, value=value, group="blockspec.plugins")


def test_type_name_requires_family():
    with pytest.raises(TypeError, match="belongs to no config family"):

        class Orphan(Config, type_name="orphan"):
            pass


def test_parent_defaults_visible_on_resolved():
    attention = ToyAttentionConfig.from_dict({})
    assert attention.query.bias is None
    assert attention.query.resolved.bias is True
    assert attention.output.resolved.bias is False
    assert attention.output.resolved.init == ToyFillConfig(value=0.0)
    assert attention.to_dict() == {"type": "toy_attention"}


def test_parent_defaults_do_not_replace_user_value():
    attention = ToyAttentionConfig.from_dict({"query": {"bias": False}})
    assert attention.query.resolved.bias is False
    assert attention.resolved.query.bias is False


def test_parent_defaults_reach_deep_through_resolved():
    model = ToyModelConfig.from_dict({"blocks": [{}, {"mixer": {"type": "toy_mamba"}}]})
    resolved = model.resolved
    assert resolved.blocks[0].mixer.query.bias is True
    assert resolved.blocks[0].mixer.query.init == ToyNormalConfig(std=0.02)
    assert model.blocks[0].mixer.query.bias is None


def test_parent_defaults_copy_shared_child():
    shared = ToyLinearConfig()
    attention = ToyAttentionConfig(query=shared, output=shared)
    assert attention.query.resolved.bias is True
    assert attention.output.resolved.bias is False
    assert shared.resolved.bias is None


def test_shortcut_expands_into_unset_children():
    attention = ToyAttentionConfig.from_dict({"add_biases": False, "output": {"bias": True}})
    assert attention.query.bias is False
    assert attention.output.bias is True
    assert attention.add_biases is None
    assert attention.to_dict() == {"type": "toy_attention", "query": {"bias": False}, "output": {"bias": True}}


def test_shortcut_transform_and_chain_through_levels():
    model = ToyModelConfig.from_dict({"init_std": 0.5, "blocks": [{}, {"mixer": {"type": "toy_mamba"}}], "named": {"a": {}}})
    assert model.blocks[0].mixer.query.init == ToyNormalConfig(std=0.5)
    assert model.blocks[0].mixer.output.init == ToyNormalConfig(std=0.25)
    assert model.named["a"].mixer.query.init == ToyNormalConfig(std=0.5)
    assert isinstance(model.blocks[1].mixer, ToyMambaConfig)
    assert "init_std" not in model.to_dict()
    assert "init_std" not in model.to_dict(resolved=True)


def test_shortcut_on_python_objects():
    attention = ToyAttentionConfig(add_biases=True, output=ToyLinearConfig(bias=False))
    assert attention.query.bias is True
    assert attention.output.bias is False


def test_to_dict_keeps_subclass_fields():
    block = ToyBlockConfig(mixer=ToyMambaConfig(state_size=7, label="x"))
    assert block.to_dict() == {"mixer": {"type": "toy_mamba", "state_size": 7, "label": "x"}}


def test_to_dict_minimal_keeps_type_of_default_type():
    block = ToyBlockConfig.from_dict({"mixer": {"heads": 2}})
    assert block.to_dict() == {"mixer": {"type": "toy_attention", "heads": 2}}


def test_to_dict_resolved_writes_everything():
    data = ToyBlockConfig.from_dict({}).to_dict(resolved=True)
    assert data == {
        "mixer": {
            "type": "toy_attention",
            "heads": 8,
            "head_groups": None,
            "query": {"bias": True, "init": {"type": "toy_normal", "std": 0.02}},
            "output": {"bias": False, "init": {"type": "toy_fill", "value": 0.0}},
        },
        "dropout": 0.0,
        "activation": "silu",
    }


def test_round_trip_minimal_and_resolved():
    config = ToyModelConfig.from_dict(
        {"blocks": [{"mixer": {"heads": 2, "query": {"bias": False}}}, {"mixer": {"type": "toy_mamba", "label": "1e-5"}}]}
    )
    assert ToyModelConfig.from_yaml(config.to_yaml()) == config
    reloaded = ToyModelConfig.from_yaml(config.to_yaml(resolved=True))
    assert reloaded == config.resolved
    assert reloaded.to_dict(resolved=True) == config.to_dict(resolved=True)


def test_round_trip_keeps_number_like_strings():
    config = ToyMambaConfig(label="true")
    for text in ["true", "1e-5", "null", "123", "yes", "0x10"]:
        config = ToyMambaConfig(label=text)
        assert ToyMambaConfig.from_yaml(config.to_yaml()).label == text


def test_round_trip_float_exact():
    for value in [0.1, 1e-5, 1 / 3, 2.5e-300, 123456789.123456789]:
        config = ToyBlockConfig(dropout=value)
        assert ToyBlockConfig.from_yaml(config.to_yaml()).dropout == value


def test_strict_types_reject_yaml_11_booleans():
    with pytest.raises(ConfigError, match=r"query\.bias \(<string>:1\): Input should be a valid boolean; write true or false \[got 'yes'\]"):
        ToyAttentionConfig.from_yaml("query: {bias: yes}\n")


def test_yaml_scientific_notation_loads_as_float():
    assert ToyBlockConfig.from_yaml("dropout: 1e-5\n").dropout == 1e-5


def test_non_polymorphic_config_rejects_type_key():
    with pytest.raises(ConfigError, match=r"query\.type: ToyLinearConfig is not polymorphic"):
        ToyAttentionConfig.from_dict({"query": {"type": "linear"}})


def test_constructor_raises_config_error():
    with pytest.raises(ConfigError, match=r"query\.bias: Input should be a valid boolean"):
        ToyAttentionConfig(heads=2, query={"bias": "maybe"})


class _OptionalChildConfig(Config):
    extra: ToyLinearConfig | None = None
    """An optional part that is off by default."""
    main: ToyLinearConfig = ToyLinearConfig(bias=False)
    """A part whose default is not empty."""
    add_biases: bool | None = None
    """Shortcut: bias of both parts."""

    shortcuts = {"add_biases": {"extra.bias": None, "main.init": lambda value: {"type": "toy_fill", "value": float(value)}}}


def test_shortcut_leaves_optional_child_off():
    config = _OptionalChildConfig.from_dict({"add_biases": True})
    assert config.extra is None
    assert config.main == ToyLinearConfig(bias=False, init=ToyFillConfig(value=1.0))


def test_shortcut_reaches_optional_child_when_set():
    config = _OptionalChildConfig.from_dict({"add_biases": True, "extra": {}})
    assert config.extra == ToyLinearConfig(bias=True)


def test_shortcut_bad_value_reported_at_shortcut():
    with pytest.raises(ConfigError) as raised:
        ToyModelConfig.from_dict({"init_std": "abc", "blocks": [{}, {}]})
    assert [issue.path for issue in raised.value.issues] == ["init_std"]
    assert raised.value.issues[0].value == "abc"


def test_config_rejects_infinite_float():
    with pytest.raises(ConfigError, match=r"dropout \(<string>:1\): Input should be a finite number \[got inf\]"):
        ToyBlockConfig.from_yaml("dropout: .inf\n")


def test_family_unknown_type_names_failed_plugin(monkeypatch):
    from blockspec.config import registry

    monkeypatch.setattr(registry, "_failed_entry_points", {})
    monkeypatch.setattr(registry, "_loaded_entry_points", set())
    entry_point = _entry_point("broken_plugin", "no_such_module_for_blockspec_tests")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [entry_point] if group == "blockspec.plugins" else [])
    with pytest.raises(ConfigError, match=r"Plugin broken_plugin=no_such_module_for_blockspec_tests failed to load \(ModuleNotFoundError"):
        ToyBlockConfig.from_dict({"mixer": {"type": "toy_from_broken_plugin"}})


def test_child_override_reexpands_its_shortcut():
    model = ToyModelConfig.from_dict({"blocks": [{"mixer": {"add_biases": True, "init_std": 0.5}}]})
    mixer = model.blocks[0].mixer
    changed = mixer.with_overrides({"add_biases": False, "init_std": 0.01})
    assert changed.query.bias is False
    assert changed.output.bias is False
    assert changed.query.init == ToyNormalConfig(std=0.01)


@pytest.mark.filterwarnings("ignore:Field name \"resolved\":UserWarning")
def test_reserved_field_name_rejected():
    with pytest.raises(TypeError, match=r"declares fields \['resolved'\], which are reserved"):

        class Clashing(Config):
            resolved: int = 1


def test_same_class_name_from_other_module_rejected():
    namespace = {"__module__": "some_plugin.collide", "__qualname__": "ToyMambaConfig", "__annotations__": {}}
    with pytest.raises(TypeError, match=r"cannot register some_plugin\.collide\.ToyMambaConfig as toy_mixer type 'toy_mamba'"):
        type("ToyMambaConfig", (ToyMixerConfig,), namespace, type_name="toy_mamba")


def test_validator_named_like_internal_state_works():
    class ProbeConfig(ToyMixerConfig, type_name="toy_probe"):
        out: ToyLinearConfig = ToyLinearConfig()

        @model_validator(mode="after")
        def _defaults(self):
            self._fill_defaults("out", bias=False)
            return self

    assert ProbeConfig().resolved.out.bias is False


def test_tuple_field_rejected_at_definition():
    with pytest.raises(TypeError, match=r"declares tuple fields \['sizes'\]; use list instead"):

        class TupleConfig(Config):
            sizes: tuple[int, int] | None = None


def test_intermediate_base_requires_type():
    class RecurrentMixerConfig(ToyMixerConfig):
        """A group of mixers that the default type does not belong to."""

    class HolderConfig(Config):
        mixer: RecurrentMixerConfig

    with pytest.raises(ConfigError, match=r"mixer\.type: missing `type`: this toy_mixer must be one of \(none registered\)"):
        HolderConfig.from_dict({"mixer": {}})
