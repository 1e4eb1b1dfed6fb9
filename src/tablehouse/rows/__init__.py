"""Rows: validated ingest into a dataset's table, and a filterable row API over it."""
