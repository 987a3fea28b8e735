"""Placeholder until the attention configs land."""

__all__: list[str] = []
