"""Tablehouse: define datasets by schema, load rows, query them in SQL."""

__version__ = "0.1.0"
