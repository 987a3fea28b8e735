"""Strict, safe YAML loading and dumping for configs.

PyYAML's own loaders follow YAML 1.1, where `yes`, `on` and `off` are booleans, `1:30` is
the base-60 integer 90, `010` is octal 8 and `1e-5` is a string because it has no dot. A key named
`on` or a learning rate written `1e-5` would then silently change type. This module
resolves plain scalars with its own resolver, close to the YAML 1.2 core schema:

- booleans: only lowercase `true` and `false` (`True`, `yes`, `on`, `off` stay strings)
- null: `null`, `~` and the empty scalar
- integers: `[-+]?[0-9]+` in decimal (a leading zero is not octal), `0x...` and `0o...`
- floats: `1.5`, `1e-5`, `-2E+3`, `.5`, `1.`, `.inf`, `-.inf`, `.nan` (lowercase only)
- everything else is a string, including `1_000`, `0b1` and `1:30`

The dumper uses the same resolver to decide which strings need quotes, so
`load_yaml(dump_yaml(x)).data == x` for plain data.

Loading composes the node graph with PyYAML's Reader, Scanner, Parser and Composer, then
builds plain Python values itself. PyYAML's SafeConstructor is not used because it returns
one shared object for every use of an anchor and applies the YAML 1.1 rules above.

- Only plain data is built: mappings, sequences, strings, integers, floats, booleans and
  null. Any other tag (`!!python/...`, `!!binary`, `!!set`, custom `!tags`) raises
  ConfigError, so no other object is ever constructed.
- Every use of an alias becomes an independent deep copy. The expanded node count is
  computed on the node graph before anything is built, so an alias bomb fails at once.
- Merge keys (`<<: *base` or `<<: [*a, *b]`) are supported. The merged entries are
  copied, keys written in the mapping itself override them, and in a list of mappings an
  earlier mapping takes precedence over a later one.
- Duplicate keys, keys that are not strings or integers, and a second document raise
  ConfigError with the file and line.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.emitter import Emitter
from yaml.error import Mark
from yaml.events import AliasEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.representer import BaseRepresenter
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner
from yaml.serializer import Serializer

from blockspec.config.errors import ConfigError, ConfigIssue, format_path

__all__ = ["LoadedYaml", "dump_yaml", "load_yaml"]

Loc = tuple[str | int, ...]

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR_TAG = _TAG_PREFIX + "str"
_BOOL_TAG = _TAG_PREFIX + "bool"
_NULL_TAG = _TAG_PREFIX + "null"
_INT_TAG = _TAG_PREFIX + "int"
_FLOAT_TAG = _TAG_PREFIX + "float"
_SEQ_TAG = _TAG_PREFIX + "seq"
_MAP_TAG = _TAG_PREFIX + "map"
_MERGE_TAG = _TAG_PREFIX + "merge"

# `\Z` anchors the end because BaseResolver.resolve calls `regexp.match`.
_BOOL_RE = re.compile(r"(?:true|false)\Z")
_NULL_RE = re.compile(r"(?:null|~|)\Z")
_INT_RE = re.compile(r"(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)\Z")
_FLOAT_RE = re.compile(
    r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.inf|\.nan)\Z"
)
_MERGE_RE = re.compile(r"<<\Z")


class _Resolver(BaseResolver):
    """Tag resolver for plain scalars, shared by the loader and the dumper."""


# Resolvers are tried in the order added, so integers win over floats for "123".
_Resolver.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tf"))
_Resolver.add_implicit_resolver(_NULL_TAG, _NULL_RE, ["n", "~", ""])
_Resolver.add_implicit_resolver(_INT_TAG, _INT_RE, list("-+0123456789"))
_Resolver.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+.0123456789"))
_Resolver.add_implicit_resolver(_MERGE_TAG, _MERGE_RE, ["<"])


@dataclass(frozen=True)
class LoadedYaml:
    """A loaded YAML document: its plain data and the line of every node in it."""

    data: Any
    source: str
    """The file path as given, or "<string>" for YAML text."""
    lines: dict[Loc, int]
    """Path of every node (root is `()`) to its 1-based line. Keys of a mapping map to the
    line of the key; alias uses map to the line of the alias, their contents to the anchor."""

    def location(self, loc: tuple[str | int, ...]) -> str | None:
        """Return 'source:line' of the deepest node that is a prefix of `loc`, or None."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return f"{self.source}:{line}"
        return None


def load_yaml(source: str | os.PathLike, *, max_nodes: int = 1_000_000) -> LoadedYaml:
    """Load one YAML document as plain data, raising ConfigError for anything invalid.

    A str that contains a newline is YAML text. A str that ends in `.yaml`/`.yml` (in any
    case) or names an existing file or folder, and any os.PathLike, is a path. Any other
    str is YAML text. `max_nodes` limits the number of values in the
    document after every alias is expanded.
    """
    text, name = _read_source(source)
    try:
        return _load_text(text, name, max_nodes)
    except yaml.YAMLError as error:
        raise _syntax_error(error, name) from error
    except RecursionError as error:
        message = "the document is nested too deeply for the parser. Reduce the nesting depth."
        raise ConfigError(message, source=name) from error


def dump_yaml(data: Any) -> str:
    """Serialize plain data as block-style YAML that `load_yaml` reads back unchanged.

    Keys keep their insertion order. Tuples are written as sequences and load back as
    lists. Raises TypeError for any value that is not a dict, list, tuple, str, int, float,
    bool or None, and for mapping keys that are not str or int. Data that contains itself
    raises RecursionError.
    """
    stream = io.StringIO()
    dumper = _Dumper(stream)
    try:
        dumper.open()
        dumper.represent(data)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


# --- loading -------------------------------------------------------------------------


def _read_source(source: str | os.PathLike) -> tuple[str | bytes, str]:
    if isinstance(source, str) and _is_yaml_text(source):
        return source, "<string>"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_yaml expects YAML text or a file path, got {type(source).__name__}")

    path = os.fsdecode(source)
    try:
        with open(path, "rb") as file:
            return file.read(), path
    except FileNotFoundError as error:
        raise ConfigError(f"YAML file not found: {path}", source=path) from error
    except OSError as error:
        raise ConfigError(f"failed to read YAML file {path}: {error.strerror}", source=path) from error


def _is_yaml_text(text: str) -> bool:
    if "\n" in text:
        return True
    if text.lower().endswith((".yaml", ".yml")):
        return False
    return not os.path.exists(text)


def _load_text(text: str | bytes, source: str, max_nodes: int) -> LoadedYaml:
    loader = _Loader(text, source)
    try:
        root = loader.compose_single_document()
    finally:
        loader.dispose()
    if root is None:
        return LoadedYaml(data=None, source=source, lines={})

    _NodeCounter(source, max_nodes, loader.alias_count).count(root)
    builder = _Builder(source)
    data = builder.build(root, (), _line(root))
    return LoadedYaml(data=data, source=source, lines=builder.lines)


def _syntax_error(error: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if not isinstance(error, yaml.MarkedYAMLError) or problem is None:
        return ConfigError(f"invalid YAML: {error}", source=source)

    message = f"invalid YAML: {problem}"
    context_mark = error.context_mark
    if error.context and context_mark is not None:
        message += f" ({error.context} on line {context_mark.line + 1})"
    location = None
    if mark is not None:
        message += f", at column {mark.column + 1}"
        location = f"{source}:{mark.line + 1}"
    return ConfigError(ConfigIssue(path="", message=message, location=location), source=source)


def _line(node: Node | _AliasNode) -> int:
    return node.start_mark.line + 1


def _target(node: Node | _AliasNode) -> Node:
    return node.target if isinstance(node, _AliasNode) else node


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag


class _AliasNode:
    """One use of an alias: the anchored node and the position of the `*name` itself."""

    def __init__(self, target: Node, anchor: str, start_mark: Mark):
        self.target = target
        self.anchor = anchor
        self.start_mark = start_mark


class _AliasComposer(Composer):
    """Composer that wraps each alias use so its own line and name are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.alias_count = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | _AliasNode:
        if not self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()
        self.alias_count += 1
        return _AliasNode(super().compose_node(parent, index), event.anchor, event.start_mark)


class _Loader(Reader, Scanner, Parser, _AliasComposer, _Resolver):
    def __init__(self, stream: str | bytes, source: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _AliasComposer.__init__(self)
        _Resolver.__init__(self)
        self.source = source

    def compose_single_document(self) -> Node | None:
        """Compose the only document, returning None for an empty stream."""
        self.get_event()  # StreamStartEvent
        root = None
        if not self.check_event(StreamEndEvent):
            root = self.compose_document()
        if not self.check_event(StreamEndEvent):
            raise ComposerError(
                None,
                None,
                "found a second document, but a config must contain exactly one",
                self.peek_event().start_mark,
            )
        self.get_event()
        return root


class _NodeCounter:
    """Counter of the values a node graph expands to, which also rejects recursive aliases.

    Sizes are memoized per node, so the work is linear in the size of the graph even when
    the expansion is exponential. A merge key counts every merged entry, including ones that
    an explicit key overrides, so the count is an upper bound.
    """

    def __init__(self, source: str, max_nodes: int, alias_count: int):
        self.source = source
        self.max_nodes = max_nodes
        self.alias_count = alias_count
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()

    def count(self, node: Node | _AliasNode) -> int:
        target = _target(node)
        key = id(target)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.active:
            raise self._recursive_alias(node)

        self.active.add(key)
        size = 1 + sum(self.count(child) for child in _children(target))
        self.active.discard(key)
        if size > self.max_nodes:
            raise self._too_many_nodes(node)
        self.sizes[key] = size
        return size

    def _recursive_alias(self, node: Node | _AliasNode) -> ConfigError:
        name = getattr(node, "anchor", "?")
        message = f"recursive alias *{name}: the alias is used inside the node it refers to"
        return _error(self.source, (), node, message)

    def _too_many_nodes(self, node: Node | _AliasNode) -> ConfigError:
        subject = "alias expansion" if self.alias_count else "the document"
        message = (
            f"{subject} exceeds {self.max_nodes} nodes. "
            "Use fewer aliases, or for a document this large on purpose, load it with "
            "blockspec.config.yaml_io.load_yaml(path, max_nodes=...) and validate the data with from_dict."
        )
        return _error(self.source, (), node, message)


def _children(node: Node) -> list[Node | _AliasNode]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [value for _, value in node.value]
    return []


def _error(source: str, loc: Loc, node: Node | _AliasNode, message: str) -> ConfigError:
    issue = ConfigIssue(path=format_path(loc), message=message, location=f"{source}:{_line(node)}")
    return ConfigError(issue, source=source)


def _parse_bool(text: str) -> bool:
    return text == "true"


def _parse_null(text: str) -> None:
    return None


def _parse_int(text: str) -> int:
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)


def _parse_float(text: str) -> float:
    if text == ".nan":
        return math.nan
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return float(text)


_SCALAR_PARSERS = {
    _STR_TAG: str,
    _BOOL_TAG: _parse_bool,
    _NULL_TAG: _parse_null,
    _INT_TAG: _parse_int,
    _FLOAT_TAG: _parse_float,
}
# Explicitly tagged scalars (`!!int "7"`) skip the resolver, so their text is checked here.
_SCALAR_PATTERNS = {
    _BOOL_TAG: _BOOL_RE,
    _NULL_TAG: _NULL_RE,
    _INT_TAG: _INT_RE,
    _FLOAT_TAG: _FLOAT_RE,
}
_PLAIN_DATA = "Only mappings, sequences, strings, numbers, booleans and null are allowed."


class _Builder:
    """Converter from a node graph to plain Python data that records the line of every value.

    Each visit creates new containers, so every alias use yields an independent copy.
    Run `_NodeCounter` first, because the builder assumes the graph has no cycles.
    """

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[Loc, int] = {}

    def build(self, node: Node | _AliasNode, loc: Loc, line: int) -> Any:
        self.lines[loc] = line
        target = _target(node)
        if isinstance(target, ScalarNode):
            return self._scalar(target, loc)
        if isinstance(target, SequenceNode):
            return self._sequence(target, loc)
        return self._mapping(target, loc)

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        parse = _SCALAR_PARSERS.get(node.tag)
        if parse is None:
            raise self._error(loc, node, f"unsupported YAML tag {_short_tag(node.tag)}. {_PLAIN_DATA}")
        pattern = _SCALAR_PATTERNS.get(node.tag)
        if pattern is not None and not pattern.match(node.value):
            message = f"{node.value!r} is not a valid value for tag {_short_tag(node.tag)}"
            raise self._error(loc, node, message)
        return parse(node.value)

    def _sequence(self, node: SequenceNode, loc: Loc) -> list[Any]:
        self._check_collection_tag(node, _SEQ_TAG, loc)
        return [self.build(item, (*loc, index), _line(item)) for index, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[str | int, Any]:
        self._check_collection_tag(node, _MAP_TAG, loc)
        result = {}
        for key, (key_node, value_node) in self._entries(node, loc).items():
            result[key] = self.build(value_node, (*loc, key), _line(key_node))
        return result

    def _check_collection_tag(self, node: Node, expected: str, loc: Loc) -> None:
        if node.tag != expected:
            raise self._error(loc, node, f"unsupported YAML tag {_short_tag(node.tag)}. {_PLAIN_DATA}")

    def _entries(self, node: MappingNode, loc: Loc) -> dict[str | int, tuple[Node, Node]]:
        """Return key -> (key node, value node), with merge keys expanded."""
        explicit: dict[str | int, tuple[Node, Node]] = {}
        merge_values = []
        for key_node, value_node in node.value:
            if _is_merge_key(key_node):
                merge_values.append(value_node)
                continue
            key = self._key(key_node, loc)
            if key in explicit:
                raise self._duplicate_key(key, explicit[key][0], key_node, loc)
            explicit[key] = (key_node, value_node)

        merged: dict[str | int, tuple[Node, Node]] = {}
        for value_node in merge_values:
            for key, entry in self._merged_entries(value_node, loc).items():
                merged.setdefault(key, entry)
        # Explicit keys override merged ones, keeping the merged key's position.
        return {**merged, **explicit}

    def _merged_entries(self, value_node: Node, loc: Loc) -> dict[str | int, tuple[Node, Node]]:
        target = _target(value_node)
        sources = target.value if isinstance(target, SequenceNode) else [value_node]
        merged: dict[str | int, tuple[Node, Node]] = {}
        for source_node in sources:
            source = _target(source_node)
            if not isinstance(source, MappingNode):
                message = "merge key '<<' must be given a mapping or a list of mappings"
                raise self._error(loc, source_node, message)
            self._check_collection_tag(source, _MAP_TAG, loc)
            for key, entry in self._entries(source, loc).items():
                merged.setdefault(key, entry)
        return merged

    def _key(self, key_node: Node, loc: Loc) -> str | int:
        target = _target(key_node)
        if not isinstance(target, ScalarNode):
            kind = "a sequence" if isinstance(target, SequenceNode) else "a mapping"
            message = f"mapping key is {kind}, but keys must be strings or integers"
            raise self._error(loc, key_node, message)

        key = self._scalar(target, loc)
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            kind = {bool: "a boolean", float: "a float"}.get(type(key), "null")
            message = (
                f"mapping key {target.value!r} is {kind}, but keys must be strings or "
                "integers. Quote the key to make it a string."
            )
            raise self._error(loc, key_node, message)
        return key

    def _duplicate_key(self, key: str | int, first: Node, second: Node, loc: Loc) -> ConfigError:
        message = (
            f"duplicate key {key!r}, first defined on line {_line(first)}. "
            "Remove or rename one of them."
        )
        return self._error((*loc, key), second, message)

    def _error(self, loc: Loc, node: Node | _AliasNode, message: str) -> ConfigError:
        return _error(self.source, loc, node, message)


def _is_merge_key(key_node: Node | _AliasNode) -> bool:
    target = _target(key_node)
    return isinstance(target, ScalarNode) and target.tag == _MERGE_TAG


# --- dumping -------------------------------------------------------------------------


class _Representer(BaseRepresenter):
    """Representer for plain data only, which never writes anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        # Shared objects are written out in full each time, because the loader copies
        # every alias use anyway and plain output is easier to read.
        return True


# PyYAML 6.0.4 writes these line breaks unescaped in single-quoted scalars, and reading
# folds them into spaces, so strings containing them are written double-quoted.
_UNICODE_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


# YAML 1.1 readers (PyYAML's safe_load among them) take these words for booleans, so
# they are quoted to keep the output portable although load_yaml reads them as strings.
_YAML_11_BOOLEAN_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false"}


def _represent_str(representer: _Representer, data: str) -> Node:
    style = None
    if any(char in data for char in _UNICODE_LINE_BREAKS):
        style = '"'
    elif data.lower() in _YAML_11_BOOLEAN_WORDS:
        style = "'"
    return representer.represent_scalar(_STR_TAG, data, style=style)


def _represent_bool(representer: _Representer, data: bool) -> Node:
    return representer.represent_scalar(_BOOL_TAG, "true" if data else "false")


def _represent_int(representer: _Representer, data: int) -> Node:
    return representer.represent_scalar(_INT_TAG, str(data))


def _represent_float(representer: _Representer, data: float) -> Node:
    if math.isnan(data):
        text = ".nan"
    elif math.isinf(data):
        text = ".inf" if data > 0 else "-.inf"
    else:
        # repr is the shortest text that parses back to the same float. A dot is added to
        # exponent forms ("1e-05" -> "1.0e-05") so YAML 1.1 readers also see a float.
        text = repr(data)
        mantissa, exponent_mark, exponent = text.partition("e")
        if exponent_mark and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar(_FLOAT_TAG, text)


def _represent_none(representer: _Representer, data: None) -> Node:
    return representer.represent_scalar(_NULL_TAG, "null")


def _represent_list(representer: _Representer, data: list[Any] | tuple[Any, ...]) -> Node:
    return representer.represent_sequence(_SEQ_TAG, data)


def _represent_dict(representer: _Representer, data: dict[Any, Any]) -> Node:
    for key in data:
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(f"cannot dump mapping key {key!r} to YAML: keys must be str or int")
    return representer.represent_mapping(_MAP_TAG, data)


def _reject(representer: _Representer, data: Any) -> Node:
    raise TypeError(
        f"cannot dump {type(data).__name__} to YAML: only dict, list, tuple, str, int, "
        "float, bool and None are supported"
    )


_Representer.add_representer(str, _represent_str)
_Representer.add_representer(bool, _represent_bool)
_Representer.add_representer(int, _represent_int)
_Representer.add_representer(float, _represent_float)
_Representer.add_representer(type(None), _represent_none)
_Representer.add_representer(list, _represent_list)
_Representer.add_representer(tuple, _represent_list)
_Representer.add_representer(dict, _represent_dict)
# Lookups use the exact type first, so subclasses such as enums or numpy scalars end here.
_Representer.add_multi_representer(object, _reject)


class _Dumper(Emitter, Serializer, _Representer, _Resolver):
    def __init__(self, stream: io.StringIO):
        Emitter.__init__(self, stream, allow_unicode=True)
        Serializer.__init__(self)
        _Representer.__init__(self, default_flow_style=False, sort_keys=False)
        _Resolver.__init__(self)
