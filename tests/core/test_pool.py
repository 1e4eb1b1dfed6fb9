"""The connection pool serves waiting requests first come, first served, and loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tablehouse.core.pool import FairAsyncQueue, FairAsyncQueuePool
from tests.support.serving import runtime_of
from tests.support.waiting import wait_until


@pytest.fixture
async def one_connection(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}",
        poolclass=FairAsyncQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.5,
    )
    yield engine
    await engine.dispose()


def checked_out(engine: AsyncEngine) -> int:
    pool = engine.pool
    assert isinstance(pool, FairAsyncQueuePool)
    return pool.checkedout()


def waiters(engine: AsyncEngine) -> int:
    """Check-outs waiting in line for a connection."""
    pool = engine.pool
    assert isinstance(pool, FairAsyncQueuePool)
    queue = pool._pool
    assert isinstance(queue, FairAsyncQueue)
    return len(queue._waiters)


async def test_a_returned_connection_goes_to_the_oldest_waiter_not_a_newcomer(
    one_connection: AsyncEngine,
) -> None:
    """SQLAlchemy's own asyncio pool lets a request that arrives as a connection comes back
    take it before the waiter that was woken for it, which then queues again: the tail
    latency of a busy server."""
    served: list[str] = []

    async def wait_then_use() -> None:
        async with one_connection.connect() as connection:
            served.append("waiter")
            await connection.execute(text("SELECT 1"))

    holder = await one_connection.connect()
    waiter = asyncio.create_task(wait_then_use())
    await wait_until(lambda: waiters(one_connection) == 1, within=0.4, what="the waiter in line")
    await holder.close()
    async with one_connection.connect():  # a newcomer, before the waiter has run again
        served.append("newcomer")
    await waiter

    assert served == ["waiter", "newcomer"]
    assert checked_out(one_connection) == 0


async def test_a_waiter_gives_up_after_the_pool_timeout(one_connection: AsyncEngine) -> None:
    holder = await one_connection.connect()
    started = time.monotonic()
    with pytest.raises(exc.TimeoutError):
        await one_connection.connect()
    assert 0.4 <= time.monotonic() - started < 2.0
    await holder.close()

    async with one_connection.connect() as connection:  # the line is empty again
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    assert checked_out(one_connection) == 0


async def test_a_connection_handed_to_a_cancelled_waiter_goes_to_the_next(
    one_connection: AsyncEngine,
) -> None:
    """A client that hangs up while its request waits for a connection: if the connection
    was handed over in that instant, it must reach the next waiter, not be lost."""

    async def check_out() -> AsyncConnection:
        return await one_connection.connect()

    holder = await one_connection.connect()
    cancelled = asyncio.create_task(check_out())
    await wait_until(lambda: waiters(one_connection) == 1, within=0.4, what="the waiter in line")
    await holder.close()  # handed to the waiting task...
    cancelled.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    async with one_connection.connect() as connection:
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    assert checked_out(one_connection) == 0


async def test_the_apps_engines_all_use_the_fair_pool(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    for engine in (runtime.engine, runtime.read_engine, runtime.query_engine):
        assert isinstance(engine.pool, FairAsyncQueuePool)
    assert (await client.get("/health/ready")).status_code == 200
