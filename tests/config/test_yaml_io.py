import math
import pathlib
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from blockspec.config.errors import ConfigError
from blockspec.config.yaml_io import LoadedYaml, dump_yaml, load_yaml


def load_error(text: str, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_yaml(text, **kwargs)
    return info.value


def assert_same(actual, expected):
    """Compare data with exact types, so 1, 1.0 and True differ and nan equals nan."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float):
        assert repr(actual) == repr(expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert type(key) is type(next(k for k in actual if k == key))
            assert_same(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected):
            assert_same(actual_item, expected_item)
    else:
        assert actual == expected


# --- safety: tags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: !!python/object:os.system {}\n",
        "a: 1\nb: !!python/name:os.system\n",
        "a: 1\nb: !!python/object/apply:os.system [echo hi]\n",
        "a: 1\nb: !custom value\n",
        "a: 1\nb: !!binary aGVsbG8=\n",
        "a: 1\nb: !!set {x, y}\n",
        "a: 1\nb: !!timestamp 2001-12-14\n",
        "a: 1\nb: !!omap [x: 1]\n",
    ],
)
def test_unsupported_tag_rejected(text):
    error = load_error(text)
    issue = error.issues[0]
    assert "unsupported YAML tag" in issue.message
    assert issue.path == "b"
    assert issue.location == "<string>:2"


def test_unsupported_tag_on_key_rejected():
    error = load_error("a: 1\n? !!python/name:os.system\n: 2\n")
    assert "unsupported YAML tag !!python/name:os.system" in str(error)
    assert error.issues[0].location == "<string>:2"


def test_explicit_standard_tags():
    data = load_yaml('a: !!str 123\nb: !!int "7"\nc: !!float 1\nd: !!bool "true"\ne: !!null ""\n').data
    assert_same(data, {"a": "123", "b": 7, "c": 1.0, "d": True, "e": None})


@pytest.mark.parametrize("text", ["a: !!int abc", "a: !!bool yes", "a: !!float 1_0", "a: !!null x"])
def test_explicit_tag_invalid_value(text):
    error = load_error(text)
    assert "is not a valid value for tag" in error.issues[0].message
    assert error.issues[0].path == "a"


def test_collection_tag_mismatch_rejected():
    error = load_error("a: !!str [1, 2]\n")
    assert "unsupported YAML tag !!str" in str(error)


# --- duplicate keys --------------------------------------------------------------------


def test_duplicate_key_nested_path_and_line():
    text = "model:\n  layers:\n    - mixer: attention\n      width: 4\n      mixer: mlp\n"
    issue = load_error(text).issues[0]
    assert "duplicate key 'mixer'" in issue.message
    assert "first defined on line 3" in issue.message
    assert issue.path == "model.layers[0].mixer"
    assert issue.location == "<string>:5"


def test_duplicate_key_at_root():
    issue = load_error("a: 1\nb: 2\na: 3\n").issues[0]
    assert issue.path == "a"
    assert issue.location == "<string>:3"


def test_duplicate_int_key():
    issue = load_error("1: a\n2: b\n1: c\n").issues[0]
    assert "duplicate key 1" in issue.message
    assert issue.path == "[1]"  # format_path writes int keys like list indices


def test_string_and_int_keys_are_distinct():
    data = load_yaml('"1": a\n1: b\n').data
    assert data == {"1": "a", 1: "b"}


def test_duplicate_key_in_flow_mapping():
    issue = load_error("a: {x: 1, x: 2}\n").issues[0]
    assert issue.path == "a.x"


# --- scalar resolution ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("True", "True"),
        ("TRUE", "TRUE"),
        ("False", "False"),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("null", None),
        ("~", None),
        ("", None),
        ("Null", "Null"),
        ("0", 0),
        ("123", 123),
        ("-7", -7),
        ("+7", 7),
        ("012", 12),
        ("0x1F", 31),
        ("0o17", 15),
        ("1:30", "1:30"),
        ("1_000", "1_000"),
        ("0b1", "0b1"),
        ("1.5", 1.5),
        ("1e-5", 1e-5),
        ("1.0e-05", 1e-5),
        ("-2E+3", -2000.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("1e5", 100000.0),
        (".inf", math.inf),
        ("+.inf", math.inf),
        ("-.inf", -math.inf),
        (".nan", math.nan),
        (".Inf", ".Inf"),
        ("1.5.2", "1.5.2"),
        ("1e", "1e"),
        (".", "."),
        ("2024-01-01", "2024-01-01"),
        ("hello", "hello"),
        ("'123'", "123"),
        ('"true"', "true"),
    ],
)
def test_scalar_resolution(text, expected):
    assert_same(load_yaml(f"value: {text}\n").data["value"], expected)


@pytest.mark.parametrize("key", ["on", "off", "yes", "no", "y", "n", "True"])
def test_yaml11_bool_words_are_string_keys(key):
    assert load_yaml(f"{key}: 1\n").data == {key: 1}


def test_int_key():
    data = load_yaml("0: a\n12: b\n").data
    assert_same(data, {0: "a", 12: "b"})


# --- non-string keys, documents --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("null: 1\n", "null"),
        ("~: 1\n", "null"),
        ("true: 1\n", "a boolean"),
        ("1.5: 1\n", "a float"),
        ("? [1, 2]\n: 1\n", "a sequence"),
        ("? {a: 1}\n: 1\n", "a mapping"),
    ],
)
def test_invalid_key_type_rejected(text, kind):
    issue = load_error(text).issues[0]
    assert kind in issue.message
    assert "keys must be strings or integers" in issue.message
    assert issue.location == "<string>:1"


def test_invalid_key_reports_parent_path():
    issue = load_error("outer:\n  inner:\n    null: 1\n").issues[0]
    assert issue.path == "outer.inner"
    assert issue.location == "<string>:3"


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_document_is_none(text):
    loaded = load_yaml(text)
    assert loaded.data is None
    assert loaded.lines == {}
    assert loaded.location(()) is None


def test_explicit_empty_document_is_none():
    assert load_yaml("---\n").data is None


@pytest.mark.parametrize(("text", "expected"), [("42", 42), ("[1, a]", [1, "a"]), ("plain text", "plain text")])
def test_top_level_any_value(text, expected):
    assert_same(load_yaml(text).data, expected)


def test_multiple_documents_rejected():
    issue = load_error("a: 1\n---\nb: 2\n").issues[0]
    assert "second document" in issue.message
    assert issue.location == "<string>:2"


def test_multiple_documents_with_leading_marker_rejected():
    assert "second document" in str(load_error("---\na: 1\n---\nb: 2\n"))


# --- aliases, bombs and merge keys ------------------------------------------------------


def test_alias_uses_are_independent_copies():
    data = load_yaml("base: &b\n  inner: [1, 2]\n  x: 1\nfirst: *b\nsecond: *b\n").data
    data["first"]["inner"].append(3)
    data["first"]["x"] = 9
    assert data["base"] == {"inner": [1, 2], "x": 1}
    assert data["second"] == {"inner": [1, 2], "x": 1}
    assert data["first"] is not data["second"]
    assert data["first"]["inner"] is not data["base"]["inner"]


def test_nested_alias_copies_are_independent():
    data = load_yaml("a: &a [1]\nb: &b [*a, *a]\nc: [*b, *b]\n").data
    data["c"][0][0].append(2)
    assert data["c"] == [[[1, 2], [1]], [[1], [1]]]
    assert data["b"] == [[1], [1]]


def billion_laughs(levels: int) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [9, 10])
def test_billion_laughs_rejected_fast(levels):
    start = time.perf_counter()
    error = load_error(billion_laughs(levels))
    elapsed = time.perf_counter() - start
    assert "alias expansion exceeds 1000000 nodes" in str(error)
    assert elapsed < 0.5


def test_max_nodes_counts_nested_aliases():
    text = billion_laughs(1)  # root 1 + l0 (1 + 9) + l1 (1 + 9 * 10) = 102 nodes
    assert len(load_yaml(text, max_nodes=102).data["l1"]) == 9
    error = load_error(text, max_nodes=101)
    assert "alias expansion exceeds 101 nodes" in str(error)


def test_max_nodes_without_aliases():
    error = load_error("[1, 2, 3, 4]", max_nodes=3)
    assert "the document exceeds 3 nodes" in str(error)


def test_recursive_alias_rejected():
    issue = load_error("a: &a\n  b: *a\n").issues[0]
    assert "recursive alias *a" in issue.message
    assert issue.location == "<string>:2"


def test_undefined_alias_rejected():
    issue = load_error("a: 1\nb: *missing\n").issues[0]
    assert "undefined alias" in issue.message
    assert issue.location == "<string>:2"


def test_merge_key_copies_and_overrides():
    text = "base: &base\n  lr: 0.1\n  wd: 0.01\nrun:\n  <<: *base\n  lr: 0.5\n"
    data = load_yaml(text).data
    assert data["run"] == {"lr": 0.5, "wd": 0.01}
    data["run"]["wd"] = 1.0
    assert data["base"]["wd"] == 0.01


def test_merge_key_list_earlier_wins():
    text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  w: 0\n"
    assert load_yaml(text).data["c"] == {"x": 1, "y": 1, "z": 2, "w": 0}


def test_merge_key_nested_merge():
    text = "a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b}\n"
    assert load_yaml(text).data["c"] == {"x": 1, "y": 2}


def test_merge_key_rejects_scalar():
    issue = load_error("a: {<<: 5}\n").issues[0]
    assert "merge key '<<'" in issue.message
    assert issue.path == "a"


def test_quoted_merge_key_is_string():
    assert load_yaml('"<<": 1\n').data == {"<<": 1}


def test_merged_values_keep_anchor_lines():
    loaded = load_yaml("base: &base\n  lr: 0.1\nrun:\n  <<: *base\n  wd: 0\n")
    assert loaded.lines[("run", "lr")] == 2
    assert loaded.lines[("run", "wd")] == 5


# --- line tracking ----------------------------------------------------------------------


TRANSFORMER = """\
transformer:
  width: 512
  blocks:
    - mixer:
        type: attention
        heads: 8
    - mixer: {type: mamba}
      norm: rms
"""


def test_lines_every_node():
    loaded = load_yaml(TRANSFORMER)
    assert loaded.lines == {
        (): 1,
        ("transformer",): 1,
        ("transformer", "width"): 2,
        ("transformer", "blocks"): 3,
        ("transformer", "blocks", 0): 4,
        ("transformer", "blocks", 0, "mixer"): 4,
        ("transformer", "blocks", 0, "mixer", "type"): 5,
        ("transformer", "blocks", 0, "mixer", "heads"): 6,
        ("transformer", "blocks", 1): 7,
        ("transformer", "blocks", 1, "mixer"): 7,
        ("transformer", "blocks", 1, "mixer", "type"): 7,
        ("transformer", "blocks", 1, "norm"): 8,
    }


def test_location_deepest_prefix():
    loaded = load_yaml(TRANSFORMER)
    assert loaded.location(("transformer", "blocks", 0, "mixer", "heads")) == "<string>:6"
    assert loaded.location(("transformer", "blocks", 1, "mixer", "missing", "deeper")) == "<string>:7"
    assert loaded.location(("transformer", "unknown")) == "<string>:1"
    assert loaded.location(()) == "<string>:1"


def test_location_without_root_match():
    loaded = LoadedYaml(data={}, source="x.yaml", lines={("a",): 3})
    assert loaded.location(("b",)) is None
    assert loaded.location(("a", "c")) == "x.yaml:3"


def test_alias_use_line():
    loaded = load_yaml("base: &b\n  x: 1\nother:\n  - *b\n")
    assert loaded.lines[("other", 0)] == 4
    assert loaded.lines[("other", 0, "x")] == 2


def test_location_uses_file_path(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("a:\n  b: 1\n")
    loaded = load_yaml(str(path))
    assert loaded.source == str(path)
    assert loaded.location(("a", "b")) == f"{path}:2"


# --- syntax errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3),
        ("a: 1\n  b: 2\n", 2),
        ("a: 1\nb: 'unterminated\n", 3),
        ("a:\n\t- 1\n", 2),
    ],
)
def test_syntax_error_is_config_error(text, line):
    error = load_error(text)
    assert error.source == "<string>"
    assert error.issues[0].message.startswith("invalid YAML: ")
    assert error.issues[0].location == f"<string>:{line}"


def test_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("a: [1\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    assert info.value.issues[0].location.startswith(f"{path}:")


def test_invalid_utf8_file_is_config_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"a: \xff\xfe\x00\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert "invalid YAML" in str(info.value)


def test_deep_nesting_is_config_error():
    error = load_error("[" * 5000 + "]" * 5000)
    assert "nested too deeply" in str(error)


# --- sources ----------------------------------------------------------------------------


def test_pathlike_source(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("x: 1\n")
    loaded = load_yaml(path)
    assert loaded.data == {"x": 1}
    assert loaded.source == str(path)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "missing.yaml"
    for source in (str(path), path):
        with pytest.raises(ConfigError) as info:
            load_yaml(source)
        assert "not found" in str(info.value)
        assert str(path) in str(info.value)


def test_string_without_yaml_suffix_is_text():
    loaded = load_yaml("config.json")
    assert loaded.data == "config.json"
    assert loaded.source == "<string>"


def test_string_with_newline_is_text():
    assert load_yaml("name: x.yaml\n").data == {"name": "x.yaml"}


def test_non_string_source_rejected():
    with pytest.raises(TypeError):
        load_yaml(b"a: 1")


# --- dumping ----------------------------------------------------------------------------


def test_dump_block_style_insertion_order():
    text = dump_yaml({"z": 1, "a": {"b": [1, 2]}, "m": "x"})
    assert text == "z: 1\na:\n  b:\n  - 1\n  - 2\nm: x\n"


@pytest.mark.parametrize("value", ["1e-5", "true", "false", "null", "~", "", "123", "0x1F", ".inf", ".nan", "-1.5", "<<"])
def test_dump_quotes_ambiguous_strings(value):
    text = dump_yaml({"k": value})
    assert text != f"k: {value}\n"
    assert_same(load_yaml(text).data, {"k": value})


@pytest.mark.parametrize("value", ["1_000", "0b1", "1:30", "hello"])
def test_dump_leaves_plain_strings_unquoted(value):
    assert dump_yaml({"k": value}) == f"k: {value}\n"


@pytest.mark.parametrize("value", ["yes", "on", "off", "True", "N"])
def test_dump_quotes_yaml_11_booleans_for_other_readers(value):
    text = dump_yaml({value: value})
    assert text == f"'{value}': '{value}'\n"
    assert yaml.safe_load(text) == {value: value}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-05, "1.0e-05"),
        (0.1, "0.1"),
        (2.0, "2.0"),
        (1e16, "1.0e+16"),
        (-2.5e-300, "-2.5e-300"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
        (True, "true"),
        (None, "null"),
        (-3, "-3"),
    ],
)
def test_dump_scalar_forms(value, text):
    assert dump_yaml({"k": value}) == f"k: {text}\n"
    assert_same(load_yaml(dump_yaml({"k": value})).data["k"], value)


def test_dump_shared_object_without_anchors():
    shared = [1, 2]
    text = dump_yaml({"a": shared, "b": shared})
    assert "&" not in text
    assert "*" not in text


@pytest.mark.parametrize("value", ["\x85", "a\x85b c", "\u2028", "x\u2029y", "a\rb", "\ufeffx"])
def test_dump_unicode_line_breaks(value):
    assert load_yaml(dump_yaml(value)).data == value


def test_dump_tuple_as_list():
    assert load_yaml(dump_yaml({"shape": (2, 3)})).data == {"shape": [2, 3]}


@pytest.mark.parametrize("value", [{1, 2}, b"x", object(), {None: 1}, {(1, 2): 1}, {True: 1}])
def test_dump_rejects_non_plain(value):
    with pytest.raises(TypeError):
        dump_yaml(value)


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
keys = st.text() | st.integers()


def plain_data(leaves):
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
        max_leaves=20,
    )


@settings(max_examples=300, deadline=None)
@given(plain_data(scalars))
def test_round_trip_plain_data(data):
    assert_same(load_yaml(dump_yaml(data)).data, data)


@settings(max_examples=100, deadline=None)
@given(plain_data(scalars | st.floats(allow_nan=True)))
def test_round_trip_with_nan(data):
    assert_same(load_yaml(dump_yaml(data)).data, data)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False).map(repr))
def test_round_trip_float_looking_strings(text):
    assert_same(load_yaml(dump_yaml({"k": text})).data, {"k": text})


def test_round_trip_file(tmp_path):
    data = {"model": {"lr": 1e-05, "layers": [{"on": True}, None], "name": "123"}}
    path = pathlib.Path(tmp_path) / "round.yaml"
    path.write_text(dump_yaml(data))
    assert_same(load_yaml(path).data, data)


def test_load_existing_path_without_yaml_suffix(tmp_path):
    path = tmp_path / "model.cfg"
    path.write_text("a: 1\n")
    loaded = load_yaml(str(path))
    assert loaded.data == {"a": 1}
    assert loaded.source == str(path)


def test_load_directory_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=f"failed to read YAML file {tmp_path}"):
        load_yaml(str(tmp_path))
