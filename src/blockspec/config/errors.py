"""The one exception type for invalid configs, and the helpers that format its entries."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_NO_VALUE = object()


def format_path(loc: Iterable[str | int]) -> str:
    """Join a location tuple into a dotted path, writing list indices as `[i]`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return path


def closest_match(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to `name`, or None when none is similar enough."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest candidate, or an empty string."""
    match = closest_match(name, candidates)
    return f" Did you mean {match!r}?" if match else ""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config: where it is, what is wrong and the offending value."""

    path: str
    message: str
    value: Any = _NO_VALUE
    location: str | None = None
    """`file:line` of the offending node when the config came from YAML."""

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE

    def __str__(self) -> str:
        where = self.path or "<root>"
        if self.location:
            where += f" ({self.location})"
        text = f"{where}: {self.message}"
        if self.has_value:
            text += f" [got {_short_repr(self.value)}]"
        return text


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(ValueError):
    """An invalid config: every problem found, each with its field path, value and fix.

    Raised for unknown keys, wrong types, unknown `type` names, inconsistent values and
    malformed YAML. `issues` lists the problems; `str(error)` lists them one per line.
    """

    def __init__(self, issues: str | ConfigIssue | Sequence[ConfigIssue], *, source: str | None = None):
        if isinstance(issues, str):
            issues = [ConfigIssue(path="", message=issues)]
        elif isinstance(issues, ConfigIssue):
            issues = [issues]
        self.issues: list[ConfigIssue] = list(issues)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        count = len(self.issues)
        header = "Invalid config" if count == 1 else f"Invalid config ({count} problems)"
        if self.source:
            header += f" in {self.source}"
        if count == 1:
            return f"{header}: {self.issues[0]}"
        return header + ":\n" + "\n".join(f"  - {issue}" for issue in self.issues)
