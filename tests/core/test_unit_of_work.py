"""One unit of work per request: commit once before the response, roll back on any error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.api.dependencies import ReadSessionDep, WriteSessionDep
from tablehouse.config import Settings
from tablehouse.core.database import (
    ReadSession,
    WriteSession,
    create_engine,
    create_read_engine,
    create_read_session_factory,
    create_session_factory,
    read_uow,
    uow,
)
from tablehouse.errors import Conflict

# Scaffolding for these tests only; it lives in the test's own database.
scratch = MetaData()
notes = Table("uow_notes", scratch, Column("id", Integer, primary_key=True), Column("body", String))
parents = Table("uow_parents", scratch, Column("id", Integer, primary_key=True))
children = Table(
    "uow_children",
    scratch,
    Column("id", Integer, primary_key=True),
    # Checked at COMMIT, not at flush: the one way to make a commit itself fail on both backends.
    Column(
        "parent_id",
        Integer,
        ForeignKey("uow_parents.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
)

router = APIRouter(prefix="/_uow")


@router.post("/notes", status_code=201)
async def add_note(session: WriteSessionDep) -> dict[str, str]:
    await session.execute(insert(notes).values(body="kept"))
    return {"status": "created"}


@router.post("/notes-then-conflict")
async def add_note_then_conflict(session: WriteSessionDep) -> None:
    await session.execute(insert(notes).values(body="must vanish"))
    await session.flush()
    raise Conflict("already exists")


class CountedFailure(Conflict):
    keeps_changes = True


@router.post("/notes-then-counted-failure")
async def add_note_then_counted_failure(session: WriteSessionDep) -> None:
    await session.execute(insert(notes).values(body="kept although the request failed"))
    raise CountedFailure("refused, but the attempt is recorded")


@router.post("/notes-then-crash")
async def add_note_then_crash(session: WriteSessionDep) -> None:
    await session.execute(insert(notes).values(body="must vanish"))
    raise RuntimeError("boom")


@router.post("/notes-from-a-read-path")
async def add_note_from_a_read_path(session: ReadSessionDep) -> None:
    # What mypy refuses (see test_mypy_refuses_a_write_session_built_from_a_read_one); at run
    # time the database refuses it too.
    await session.execute(insert(notes).values(body="must be refused"))
    raise Conflict("the handler failed after its write")


@router.post("/orphan", status_code=201)
async def add_orphan(session: WriteSessionDep) -> dict[str, str]:
    await session.execute(insert(children).values(id=1, parent_id=999))
    await session.flush()
    return {"status": "created"}


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.run_sync(scratch.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def uow_client(
    app: FastAPI, engine: AsyncEngine, client: httpx.AsyncClient
) -> httpx.AsyncClient:
    app.include_router(router)
    return client


async def test_successful_request_commits(
    uow_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await uow_client.post("/_uow/notes")
    assert response.status_code == 201
    assert await _count(engine, notes) == 1


async def test_domain_error_rolls_back_what_was_flushed(
    uow_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await uow_client.post("/_uow/notes-then-conflict")
    assert response.status_code == 409
    assert await _count(engine, notes) == 0


async def test_error_that_keeps_changes_commits_them(
    uow_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await uow_client.post("/_uow/notes-then-counted-failure")
    assert response.status_code == 409
    assert await _count(engine, notes) == 1


async def test_concurrent_read_then_write_units_of_work_all_succeed(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Twenty units of work that each read, pause, then write: none may fail as "locked"."""
    factory = create_session_factory(engine)

    async def read_then_write(index: int) -> None:
        async with uow(factory) as session:
            await session.execute(select(func.count()).select_from(notes))
            await asyncio.sleep(0.01)
            await session.execute(insert(notes).values(body=f"writer {index}"))

    await asyncio.gather(*(read_then_write(i) for i in range(20)))
    assert await _count(engine, notes) == 20


async def test_unexpected_error_rolls_back(
    uow_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await uow_client.post("/_uow/notes-then-crash")
    assert response.status_code == 500
    assert await _count(engine, notes) == 0


async def test_failed_commit_is_never_reported_as_success(
    uow_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await uow_client.post("/_uow/orphan")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert await _count(engine, children) == 0


async def test_cli_unit_of_work_commits_on_success(engine: AsyncEngine) -> None:
    async with uow(create_session_factory(engine)) as session:
        await session.execute(insert(notes).values(body="from the CLI"))
    assert await _count(engine, notes) == 1


async def test_cli_unit_of_work_rolls_back_on_error(engine: AsyncEngine) -> None:
    async def write_then_fail() -> None:
        async with uow(create_session_factory(engine)) as session:
            await session.execute(insert(notes).values(body="half-written"))
            await session.flush()
            raise Conflict("stop")

    with pytest.raises(Conflict):
        await write_then_fail()
    assert await _count(engine, notes) == 0


async def test_a_write_in_a_read_unit_of_work_is_refused_by_the_database(
    settings: Settings, engine: AsyncEngine
) -> None:
    """On both backends, not just SQLite: the PostgreSQL read engine is AUTOCOMMIT, so
    without default_transaction_read_only a write there would be kept whatever followed."""
    reads = create_read_engine(settings)
    try:
        with pytest.raises(DBAPIError, match=r"read-only|readonly"):
            async with read_uow(create_read_session_factory(reads)) as session:
                await session.execute(insert(notes).values(body="must be refused"))
    finally:
        await reads.dispose()
    assert await _count(engine, notes) == 0


@pytest.mark.backends("sqlite")
async def test_a_read_unit_of_work_on_sqlite_sees_one_snapshot(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Its BEGIN goes straight to the connection's thread; the reads in it still see one
    snapshot while a writer commits, and the next unit of work sees what was committed."""
    reads = create_read_engine(settings)
    factory = create_read_session_factory(reads)
    counted = select(func.count()).select_from(notes)
    try:
        async with read_uow(factory) as session:
            before = (await session.execute(counted)).scalar_one()
            async with uow(create_session_factory(engine)) as writer:
                await writer.execute(insert(notes).values(body="committed meanwhile"))
            during = (await session.execute(counted)).scalar_one()
        async with read_uow(factory) as session:
            after = (await session.execute(counted)).scalar_one()
    finally:
        await reads.dispose()
    assert (before, during, after) == (0, 0, 1)


@pytest.mark.backends("sqlite")
async def test_a_sqlite_connection_goes_back_to_the_pool_with_no_transaction_open(
    settings: Settings,
) -> None:
    """The pool rolls back only what is open (a ROLLBACK is a hop to the connection's
    thread), but what is open it rolls back, even a transaction SQLAlchemy never saw."""
    reads = create_read_engine(settings)
    try:
        async with reads.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute("BEGIN")
            assert driver.in_transaction
        assert not driver.in_transaction
    finally:
        await reads.dispose()


async def test_a_route_that_declares_a_read_session_cannot_write(
    uow_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await uow_client.post("/_uow/notes-from-a-read-path")
    assert response.status_code == 500
    assert await _count(engine, notes) == 0


async def test_a_route_gets_the_session_kind_it_declares_whatever_its_method(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    kinds = APIRouter(prefix="/_kinds")

    @kinds.post("/reads")
    async def post_that_reads(session: ReadSessionDep) -> str:
        return type(session).__name__

    @kinds.get("/writes")
    async def get_that_writes(session: WriteSessionDep) -> str:
        return type(session).__name__

    app.include_router(kinds)
    assert (await client.post("/_kinds/reads")).json() == ReadSession.__name__
    assert (await client.get("/_kinds/writes")).json() == WriteSession.__name__


@pytest.mark.slow
@pytest.mark.backends("sqlite")  # a type check: the database plays no part
def test_mypy_refuses_a_write_session_built_from_a_read_one(tmp_path: Path) -> None:
    example = tmp_path / "write_from_read.py"
    example.write_text(
        textwrap.dedent(
            """
            from tablehouse.core.database import ReadSession, WriteSession

            async def delete_everything(session: WriteSession) -> None: ...

            async def read_path(session: ReadSession) -> None:
                await delete_everything(session)
            """
        )
    )
    # In a process of its own: mypy raises the interpreter's recursion limit for good, which
    # would change what other tests in this process see (a JSON value nested too deeply).
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(example),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out = checked.stdout
    assert checked.returncode == 1, out + checked.stderr
    assert 'incompatible type "ReadSession"; expected "WriteSession"' in out
