"""The shared column types and mixins behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tablehouse.config import Settings, load_settings
from tablehouse.core.database import create_engine, create_session_factory
from tablehouse.core.models import Base, TimestampMixin, UUIDPrimaryKey


class ScratchBase(DeclarativeBase):
    """Same type map as the real Base, its own metadata, so the scratch table never migrates."""

    type_annotation_map = Base.type_annotation_map


class Gadget(UUIDPrimaryKey, TimestampMixin, ScratchBase):
    __tablename__ = "scratch_gadgets"
    name: Mapped[str] = mapped_column(String(50))
    seen_at: Mapped[datetime | None]
    attributes: Mapped[dict[str, Any] | None]


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.run_sync(ScratchBase.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_session_factory(engine)() as session:
        yield session


async def test_uuid_primary_key_and_timestamps_are_filled_in(session: AsyncSession) -> None:
    before = datetime.now(UTC)
    gadget = Gadget(name="lamp")
    session.add(gadget)
    await session.commit()
    assert isinstance(gadget.id, uuid.UUID)
    assert gadget.created_at.tzinfo is UTC
    assert before <= gadget.created_at <= datetime.now(UTC)


async def test_datetimes_come_back_aware_and_in_utc(session: AsyncSession) -> None:
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 5, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    gadget = Gadget(name="clock", seen_at=moment)
    session.add(gadget)
    await session.commit()
    session.expunge_all()
    loaded = (await session.execute(select(Gadget))).scalar_one()
    assert loaded.seen_at == moment
    assert loaded.seen_at is not None
    assert loaded.seen_at.utcoffset() == timedelta(0)
    assert loaded.created_at.tzinfo is not None


async def test_naive_datetimes_are_refused(session: AsyncSession) -> None:
    session.add(Gadget(name="ambiguous", seen_at=datetime(2026, 1, 1, 12, 0)))  # noqa: DTZ001
    with pytest.raises(StatementError, match="naive datetime"):
        await session.flush()


async def test_updated_at_moves_on_update(session: AsyncSession) -> None:
    gadget = Gadget(name="v1")
    session.add(gadget)
    await session.commit()
    created = gadget.updated_at
    gadget.name = "v2"
    await session.commit()
    assert gadget.updated_at > created


async def test_json_round_trips(session: AsyncSession) -> None:
    payload = {"tags": ["a", "b"], "nested": {"n": 1, "ok": True}}
    session.add(Gadget(name="json", attributes=payload))
    await session.commit()
    session.expunge_all()
    loaded = (await session.execute(select(Gadget))).scalar_one()
    assert loaded.attributes == payload


async def test_server_default_timestamps_read_back_aware(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    """Rows written by raw SQL (no Python defaults) still read back as aware UTC."""
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO scratch_gadgets (id, name) VALUES (:id, 'raw')"),
            {"id": uuid.uuid4().hex if engine.dialect.name == "sqlite" else uuid.uuid4()},
        )
    loaded = (await session.execute(select(Gadget))).scalar_one()
    assert loaded.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - loaded.created_at) < timedelta(minutes=5)


async def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'p.db'}", sqlite_busy_timeout_ms=1234
    )
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar_one()
    finally:
        await engine.dispose()
    assert (journal, foreign_keys, busy) == ("wal", 1, 1234)
