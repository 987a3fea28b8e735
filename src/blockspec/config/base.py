"""The `Config` base class: strict frozen pydantic models with typed families.

Three mechanisms live here:

* Families. A class declared with `family=` is the base of a polymorphic family; its
  subclasses declared with `type_name=` register under that name. A field annotated with
  any class of a family validates a mapping as the class its `type` key names (or the
  family's default type), so classes registered after the parent was defined work too.
* Parent-provided defaults. A parent may give a child default values for the child's
  fields that the user left unset (`None`). They are kept beside the child's own values,
  so `to_dict()` shows only what the user wrote while `config.resolved` shows the values
  a build will use.
* Shortcuts. A shortcut field (such as `add_linear_biases`) is expanded before validation
  into explicit values on every child that did not set its own, then cleared, so it
  never appears in a saved config.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Self

from .registry import Family, create_family

ShortcutTargets = Mapping[str, "Callable[[Any], Any] | None"]
"""Dotted target path (relative, `*` for every item of a list or dict) -> value transform."""


class _ConfigMeta(type(BaseModel)):  # type: ignore[misc]
    """Turns the ValidationError of a direct `SomeConfig(...)` call into a ConfigError.

    Pydantic builds nested configs without calling the class, so only user calls pass
    here; overriding `__init__` instead would make pydantic route nested validation
    through it.
    """

    def __call__(cls, *args: Any, **data: Any) -> Any:
        try:
            return super().__call__(*args, **data)
        except ValidationError as error:
            from .validation import config_error

            raise config_error(cls, data, error) from None


_STRICT = ConfigDict(strict=True, allow_inf_nan=False)

# Names of Config's own attributes and methods, and the `type` key of polymorphic nodes.
_RESERVED_NAMES = {
    "type",
    "family",
    "type_name",
    "shortcuts",
    "resolved",
    "source_data",
    "default_for",
    "from_dict",
    "from_yaml",
    "to_dict",
    "to_yaml",
    "with_overrides",
}


class Config(BaseModel, metaclass=_ConfigMeta):
    """Base class of every blockspec config: strict, frozen, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        validate_default=False,
        revalidate_instances="never",
    )

    family: ClassVar[Family | None] = None
    """The polymorphic family this class belongs to, if any."""
    type_name: ClassVar[str | None] = None
    """The `type` name this class is registered under in its family."""
    shortcuts: ClassVar[dict[str, ShortcutTargets]] = {}
    """Shortcut field name -> the child fields it expands into."""

    # Long private names, so that a subclass's validator or helper does not shadow them.
    _blockspec_defaults: dict[str, Any] = PrivateAttr(default_factory=dict)
    _blockspec_source: Any = PrivateAttr(default=None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        tuples = [name for name, field in cls.model_fields.items() if _mentions_tuple(field.annotation)]
        if tuples:
            raise TypeError(
                f"{cls.__qualname__} declares tuple fields {tuples}; use list instead, because strict "
                "validation rejects the lists that YAML gives for a tuple"
            )
        reserved = sorted(set(cls.model_fields) & _RESERVED_NAMES)
        if reserved:
            raise TypeError(
                f"{cls.__qualname__} declares fields {reserved}, which are reserved by blockspec.Config "
                f"(reserved: {', '.join(sorted(_RESERVED_NAMES))}); rename them"
            )

    def __init_subclass__(
        cls,
        *,
        family: str | None = None,
        default_type: str | None = None,
        type_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = None
        if family is not None:
            cls.family = create_family(family, cls, default_type)
        if type_name is not None:
            if not type_name:
                raise TypeError(f"{cls.__qualname__} sets an empty type_name; give it a name such as 'my_mixer'")
            if cls.family is None:
                raise TypeError(f"{cls.__qualname__} sets type_name={type_name!r} but belongs to no config family")
            cls.type_name = type_name
            cls.family.register(type_name, cls)

    # ------------------------------------------------------------------ validation

    @model_validator(mode="wrap")
    @classmethod
    def _validate_node(cls, value: Any, handler: Callable[[Any], Any], info: Any) -> Any:
        if not isinstance(value, Mapping):
            return handler(value)
        data = dict(value)
        target = cls._select_class(data)
        if target is not cls:
            return target.model_validate(data, context=info.context)
        source = dict(value)
        data.pop("type", None)
        data = cls._expand_shortcuts(data)
        config = handler(data)
        if isinstance(config, Config) and _is_plain(source):
            config._blockspec_source = source
        return config

    @classmethod
    def _select_class(cls, data: Mapping[str, Any]) -> type[Config]:
        """Return the class that validates `data`: `cls`, or a family member named by `type`."""
        if cls.family is None:
            if "type" in data and "type" not in cls.model_fields:
                raise field_error("type", "unexpected_type", f"{cls.__name__} is not polymorphic and takes no `type` key", data["type"])
            return cls
        type_name = data.get("type")
        allowed = [name for name, member in cls.family.types.items() if issubclass(member, cls)]
        if type_name is None:
            if cls.type_name is not None or cls.family.default_type is None:
                return cls
            if cls.family.default_type not in allowed:
                message = f"missing `type`: this {cls.family.name} must be one of {', '.join(sorted(allowed)) or '(none registered)'}"
                raise field_error("type", "missing_type", message, None)
            type_name = cls.family.default_type
        target = cls.family.lookup(type_name) if isinstance(type_name, str) else None
        if target is None or not issubclass(target, cls):
            raise field_error("type", "unknown_type", cls.family.unknown_type_message(type_name, allowed), type_name)
        return target

    @classmethod
    def _expand_shortcuts(cls, data: dict[str, Any]) -> dict[str, Any]:
        for name, targets in cls.shortcuts.items():
            value = data.pop(name, None)
            if value is None:
                continue
            value = _check_shortcut_value(cls, name, value)
            for path, transform in targets.items():
                target_value = transform(value) if transform is not None else value
                data = _set_where_unset(cls, data, path.split("."), target_value)
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        """Describe a family base as a `oneOf` of its types and give each type its `type` key."""
        if cls.family is None:
            return handler(core_schema)
        if cls.type_name is not None:
            return cls._add_type_key(handler(core_schema), handler)
        members = [member for member in cls.family.types.values() if issubclass(member, cls)]
        branches = [member._add_type_key(handler(member.__pydantic_core_schema__), handler) for member in members]
        return {"oneOf": branches, "description": (cls.__doc__ or "").strip()}

    @classmethod
    def _add_type_key(cls, schema: dict[str, Any], handler: Any) -> dict[str, Any]:
        target = handler.resolve_ref_schema(schema)
        if "type" in target.get("properties", {}):
            return schema
        type_schema = {"const": cls.type_name, "description": f"{cls.family.name} type"}
        target["properties"] = {"type": type_schema, **target.get("properties", {})}
        if cls.type_name != cls.family.default_type:
            target["required"] = ["type", *target.get("required", [])]
        return schema

    # ------------------------------------------------------------------ parent defaults

    def _fill_defaults(self, field_name: str, **defaults: Any) -> None:
        """Give the child config in `field_name` default values for its unset fields.

        Called by a parent from its own after-validator. The child is copied, never
        changed in place, because the same child object may sit in several parents.
        Lists and dicts of configs give the defaults to every item.
        """
        child = getattr(self, field_name)
        object.__setattr__(self, field_name, _with_defaults(child, defaults))

    @property
    def resolved(self) -> Self:
        """This config with every unset field that a parent gave a default filled in, recursively."""
        updates = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None and name in self._blockspec_defaults:
                value = self._blockspec_defaults[name]
            updates[name] = _resolve(value)
        copy = self.model_copy(update=updates)
        copy._blockspec_defaults = dict(self._blockspec_defaults)
        copy._blockspec_source = None  # overrides of a resolved config edit its resolved values
        return copy

    def source_data(self) -> dict[str, Any] | None:
        """Return the plain data this config was validated from, shortcuts included (None if built in Python)."""
        return self._blockspec_source

    def __eq__(self, other: object) -> bool:
        # Two configs are equal when they describe the same values and defaults. The data
        # they were loaded from (which may spell a shortcut) does not count.
        if type(self) is not type(other):
            return NotImplemented
        return self.__dict__ == other.__dict__ and self._blockspec_defaults == other._blockspec_defaults

    __hash__ = None  # type: ignore[assignment]  # configs hold lists, so they cannot be hashed

    def default_for(self, field_name: str) -> Any:
        """Return the parent-provided default of `field_name` (None when there is none)."""
        return self._blockspec_defaults.get(field_name)

    # ------------------------------------------------------------------ serialization

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, _source: Any = None) -> Self:
        """Validate a plain mapping (as loaded from YAML or JSON) into a config."""
        from .validation import validate

        return validate(cls, data, source=_source)

    @classmethod
    def from_yaml(cls, source: Any) -> Self:
        """Load and validate YAML from a file path or from YAML text."""
        from .yaml_io import load_yaml

        loaded = load_yaml(source)
        return cls.from_dict(loaded.data, _source=loaded)

    def to_dict(self, *, resolved: bool = False) -> dict[str, Any]:
        """Return the config as plain data.

        By default only values that differ from what loading fills in by itself are
        written; polymorphic nodes always keep their `type`. With `resolved=True` every
        field is written, with the defaults provided by parents filled in.
        """
        from .serialize import dump_config

        node = self.resolved if resolved else self
        return dump_config(node, full=resolved)

    def to_yaml(self, *, resolved: bool = False) -> str:
        """Return the config as YAML text that `from_yaml` loads back into an equal config."""
        from .yaml_io import dump_yaml

        return dump_yaml(self.to_dict(resolved=resolved))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Self:
        """Return a validated copy with dotted keys (`transformer.block.mixer.heads`) replaced.

        String values are parsed as YAML scalars, so `"8"` becomes 8 and `"1e-5"` a float.
        """
        from .overrides import apply_overrides

        return apply_overrides(self, overrides)


def field_error(loc: str | tuple[str | int, ...], error_type: str, message: str, value: Any) -> ValidationError:
    """Build a ValidationError located at `loc` (a field name or a path) inside the node being validated."""
    # Curly braces are template placeholders in PydanticCustomError, so escape them.
    template = message.replace("{", "{{").replace("}", "}}")
    path = (loc,) if isinstance(loc, str) else tuple(loc)
    return ValidationError.from_exception_data(
        "Config",
        [{"type": PydanticCustomError(error_type, template), "loc": path, "input": value}],
    )


def relocate(error: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    """Return `error` with `prefix` put before the location of each of its entries.

    A parent uses it to report a problem that a child's check found (such as a head size
    that does not fit the parent's hidden size) at the child's full path.
    """
    return merge_errors([error], prefix)


def merge_errors(errors: list[ValidationError], prefix: tuple[str | int, ...] = ()) -> ValidationError:
    """Return one ValidationError with the entries of every error in `errors`, located under `prefix`.

    A validator that runs several independent checks uses it to report all their problems at once.
    """
    line_errors = []
    for error in errors:
        for detail in error.errors(include_url=False):
            template = detail["msg"].replace("{", "{{").replace("}", "}}")
            line_errors.append(
                {
                    "type": PydanticCustomError(detail["type"], template),
                    "loc": (*prefix, *detail["loc"]),
                    "input": detail.get("input"),
                }
            )
    return ValidationError.from_exception_data(errors[0].title, line_errors)


_shortcut_adapters: dict[tuple[type, str], TypeAdapter] = {}


def _check_shortcut_value(owner: type[Config], name: str, value: Any) -> Any:
    """Validate a shortcut's value against its own field, so a bad value is reported once, at the shortcut."""
    key = (owner, name)
    if key not in _shortcut_adapters:
        field = owner.model_fields[name]
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        _shortcut_adapters[key] = TypeAdapter(annotation, config=_STRICT)
    try:
        return _shortcut_adapters[key].validate_python(value)
    except ValidationError as error:
        raise relocate(error, (name,)) from None


def _mentions_tuple(annotation: Any) -> bool:
    if annotation is tuple or typing.get_origin(annotation) is tuple:
        return True
    return any(_mentions_tuple(argument) for argument in typing.get_args(annotation))


def _is_plain(value: Any) -> bool:
    """True for data made only of dicts, lists, strings, numbers, booleans and None."""
    if isinstance(value, Mapping):
        return all(isinstance(key, (str, int)) and _is_plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _with_defaults(child: Any, defaults: dict[str, Any]) -> Any:
    if isinstance(child, Config):
        unknown = set(defaults) - set(type(child).model_fields)
        if unknown:
            raise TypeError(f"{type(child).__name__} has no fields {sorted(unknown)} to give defaults to")
        copy = child.model_copy()
        copy._blockspec_defaults = {**child._blockspec_defaults, **defaults}
        return copy
    if isinstance(child, list):
        return [_with_defaults(item, defaults) for item in child]
    if isinstance(child, dict):
        return {key: _with_defaults(item, defaults) for key, item in child.items()}
    return child


def _resolve(value: Any) -> Any:
    if isinstance(value, Config):
        return value.resolved
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------- shortcut expansion


def _set_where_unset(owner: type[Config], data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """Set `path` inside raw `data` of class `owner` to `value` unless the user set it.

    Intermediate nodes may be missing (created), raw mappings or validated configs (turned
    back into mappings). A target field that the selected class does not have is skipped,
    so a shortcut reaches only the children it applies to.
    """
    name, rest = path[0], path[1:]
    if name not in owner.model_fields:
        return data
    current = data.get(name)
    if not rest:
        if current is None:
            data = {**data, name: value}
        return data
    child_class = _config_class_of(owner, name)
    if child_class is None:
        return data
    if current is None:
        # An absent child takes its field default; an optional child that is off (None)
        # stays off, because a shortcut must not switch a part on.
        current = _dumped_default(owner, name)
        if current is None:
            return data
    data = dict(data)
    if rest[0] == "*":
        data[name] = _set_in_items(child_class, current, rest[1:], value)
    else:
        data[name] = _set_in_node(child_class, current, rest, value)
    return data


def _dumped_default(owner: type[Config], name: str) -> Any:
    """Return the default of field `name` as plain data, or None when it has no default or it is None."""
    from pydantic_core import PydanticUndefined

    from .serialize import dump_value

    default = owner.model_fields[name].get_default(call_default_factory=True)
    if default is PydanticUndefined or default is None:
        return None
    return dump_value(default, full=False)


def _set_in_items(child_class: type[Config], items: Any, path: list[str], value: Any) -> Any:
    if isinstance(items, Mapping):
        return {key: _set_in_node(child_class, item, path, value) for key, item in items.items()}
    if isinstance(items, list):
        return [_set_in_node(child_class, item, path, value) for item in items]
    return items


def _set_in_node(child_class: type[Config], node: Any, path: list[str], value: Any) -> Any:
    if isinstance(node, Config):
        node = node.to_dict()
    if not isinstance(node, Mapping):
        return node  # the type error is reported by validation
    node = dict(node)
    try:
        selected = child_class._select_class(node)
    except ValidationError:
        return node  # the unknown type is reported by validation
    return _set_where_unset(selected, node, path, value)


def _config_class_of(owner: type[Config], field_name: str) -> type[Config] | None:
    """Return the Config class inside a field's annotation (through Optional, list, dict)."""
    return config_class_in(owner.model_fields[field_name].annotation)


def config_class_in(annotation: Any) -> type[Config] | None:
    """Return the Config class named by an annotation such as `X | None`, `list[X]` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, Config):
        return annotation
    for argument in typing.get_args(annotation):
        found = config_class_in(argument)
        if found is not None:
            return found
    return None
