"""Placeholder until the block configs land."""

__all__: list[str] = []
