"""Baseline: the empty control plane every later migration builds on.

The foundation itself keeps no tables; this revision exists so that ``db upgrade``,
``db current`` and ``db check`` have a head to work from on a fresh database, and so that
later domains' migrations form one chain from here.

Revision ID: 20261122_0001
Revises:
Create Date: 2026-11-22 06:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "20261122_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to create yet: accounts, schemas and rows add their own tables."""


def downgrade() -> None:
    """Nothing to drop."""
