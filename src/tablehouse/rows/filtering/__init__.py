"""Listing rows: filters, order, selected fields and keyset cursors, checked against a
dataset's fields."""
