"""The catalog of datasets. The datasets' own tables are not ORM models: they are built
from a schema's fields at run time and live outside Alembic's metadata."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tablehouse.core.models import Base, TimestampMixin, UUIDPrimaryKey, utc_now


class Dataset(UUIDPrimaryKey, TimestampMixin, Base):
    """A dataset in the catalog: its name, fields and version; its rows are in ``table_name``.
    (The table is "schemas", as the URL is /schemas: what a client defines is a dataset's schema.)
    """

    __tablename__ = "schemas"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Generated from the id, never from the user's name, so it is safe and unique.
    table_name: Mapped[str] = mapped_column(String(63), unique=True)
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class DatasetVersion(UUIDPrimaryKey, Base):
    """One version of a dataset's fields and the change that made it."""

    __tablename__ = "schema_versions"
    __table_args__ = (UniqueConstraint("schema_id", "number"),)

    schema_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schemas.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    change: Mapped[dict[str, Any]] = mapped_column(JSON)
    ddl: Mapped[str] = mapped_column(Text)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


DATASET_TABLE_PREFIX = "ds_"


def physical_table_name(schema_id: uuid.UUID) -> str:
    return f"{DATASET_TABLE_PREFIX}{schema_id.hex}"
