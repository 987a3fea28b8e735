"""Placeholder until the mlp configs land."""

__all__: list[str] = []
