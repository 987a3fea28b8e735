"""Placeholder until the language_model configs land."""

__all__: list[str] = []
