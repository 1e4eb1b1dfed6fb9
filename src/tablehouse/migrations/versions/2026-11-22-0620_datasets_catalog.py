"""Datasets catalog: schemas (one per dataset) and their versions.

The datasets' own tables (ds_<id>) are made at run time and are not in the models;
downgrading drops them with the catalog that describes them.

Revision ID: 20261122_0003
Revises: 20261122_0002
Create Date: 2026-11-22 06:27:47.086863+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261122_0003"
down_revision: str | None = "20261122_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schemas",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=63), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_schemas_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schemas")),
        sa.UniqueConstraint("owner_id", "name", name=op.f("uq_schemas_owner_id_name")),
        sa.UniqueConstraint("table_name", name=op.f("uq_schemas_table_name")),
    )
    with op.batch_alter_table("schemas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schemas_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "schema_versions",
        sa.Column("schema_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.Column("ddl", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_schema_versions_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["schema_id"],
            ["schemas.id"],
            name=op.f("fk_schema_versions_schema_id_schemas"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_versions")),
        sa.UniqueConstraint(
            "schema_id", "number", name=op.f("uq_schema_versions_schema_id_number")
        ),
    )


def downgrade() -> None:
    connection = op.get_bind()
    for (table_name,) in connection.execute(sa.text("SELECT table_name FROM schemas")):
        op.drop_table(table_name)
    op.drop_table("schema_versions")
    with op.batch_alter_table("schemas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schemas_owner_id"))

    op.drop_table("schemas")
