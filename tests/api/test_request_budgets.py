"""Every request's body within budget, against real server processes: a body that stops
arriving is cut off with 408 and holds no lock or pooled connection meanwhile, a body too
large is 413 before it is read, a user's concurrent ingests are bounded (429), and a large
JSON array is read incrementally, off the event loop, in flat memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import httpx
import orjson
import pytest

from tests.faults.harness import (
    checked_out,
    event_rows,
    ingests_in_progress,
    server_env,
    signed_in,
    wait_until,
    with_events_dataset,
)
from tests.support.accounts import bearer, login, register
from tests.support.processes import Server, running_server

pytestmark = pytest.mark.slow

T = TypeVar("T")
STALL_SECONDS = 2  # BODY_READ_TIMEOUT_SECONDS in these tests
PROMPT = 1.0
SKIP = {"on_conflict": "skip"}  # what "answers promptly" means here; generous for a loaded machine


def _budget_env(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    budget = {
        "BODY_READ_TIMEOUT_SECONDS": str(STALL_SECONDS),
        "BODY_MIN_RATE_GRACE_SECONDS": "60",  # only the idle timeout cuts these stalls off
    }
    return server_env(database_url, data_dir, **{**budget, **settings})


class _RawRequest:
    """A request on its own connection, its body sent only in part: the client then goes
    quiet, as a stalled upload does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def send(
        cls, server: Server, path: str, *, headers: dict[str, str], declared: int, body: bytes
    ) -> _RawRequest:
        port = int(server.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {declared}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return cls(reader, writer)

    async def status(self, *, within: float) -> int:
        """The answer's status code; the server must answer within ``within`` seconds."""
        async with asyncio.timeout(within):
            line = await self.reader.readline()
        assert line.startswith(b"HTTP/1.1 "), line
        return int(line.split()[1])

    async def answer(self, *, within: float) -> bytes:
        """The whole answer, read until the server closes the connection."""
        async with asyncio.timeout(within):
            return await self.reader.read()

    async def closed_by_server(self, *, within: float) -> bool:
        async with asyncio.timeout(within):
            while await self.reader.read(65536):
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def _stalled_ingests(
    server: Server, path: str, headers: dict[str, str], count: int
) -> AsyncIterator[list[_RawRequest]]:
    """``count`` uploads of rows that declare 10 MB and send the first few bytes only."""
    json_headers = {**headers, "Content-Type": "application/json"}
    requests: list[_RawRequest] = []
    try:
        for _ in range(count):
            requests.append(
                await _RawRequest.send(
                    server, path, headers=json_headers, declared=10**7, body=b'[{"id": 1'
                )
            )
        yield requests
    finally:
        for request in requests:
            await request.close()


async def _until_receiving(http: httpx.AsyncClient, uploads: int) -> None:
    """Wait until the server is receiving ``uploads`` bodies of rows."""

    async def receiving() -> bool:
        return await ingests_in_progress(http) == uploads

    await wait_until(receiving, within=10, what=f"{uploads} uploads under way")


async def _promptly(call: Awaitable[T], what: str) -> T:
    """Await ``call`` and check that it took at most PROMPT seconds."""
    started = time.monotonic()
    outcome = await call
    took = time.monotonic() - started
    assert took < PROMPT, f"{what} took {took:.2f} s"
    return outcome


async def _rows_in(http: httpx.AsyncClient, headers: dict[str, str], name: str) -> int:
    page = await http.get(
        f"/api/v1/schemas/{name}/rows", params={"count": "exact"}, headers=headers
    )
    assert page.status_code == 200, page.text
    count: int = page.json()["count"]
    return count


@pytest.mark.backends("sqlite")
async def test_a_stalled_upload_holds_no_write_lock_and_is_cut_off_with_408(
    database_url: str, tmp_path: Path
) -> None:
    env = _budget_env(database_url, tmp_path / "data", SQLITE_BUSY_TIMEOUT_MS="2000")
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            (owner,) = await signed_in(http, "staller@example.com", sessions=1)
            path = await with_events_dataset(http, owner)
            async with _stalled_ingests(server, path, owner, 1) as (stalled,):
                await _until_receiving(http, 1)
                await _promptly(register(http, "other@example.com"), "registration")
                signed = await _promptly(login(http, "other@example.com"), "login")
                other = bearer(signed["access_token"])
                mine = await _promptly(with_events_dataset(http, other, "mine"), "a new dataset")
                rows = event_rows(range(100), client=2)
                loaded = await _promptly(http.post(mine, json=rows, headers=other), "a load")
                assert loaded.status_code == 201, loaded.text

                assert await stalled.status(within=STALL_SECONDS + 5) == 408
                assert await stalled.closed_by_server(within=5)
            assert await _rows_in(http, owner, "events") == 0
            assert await _rows_in(http, other, "mine") == 100


@pytest.mark.backends("postgresql")
async def test_stalled_uploads_take_no_pooled_connection(database_url: str, tmp_path: Path) -> None:
    stalls = 32  # more than the pool's 10 + 20
    env = _budget_env(
        database_url,
        tmp_path / "data",
        MAX_CONCURRENT_INGESTS_PER_USER=str(stalls),
        DB_POOL_TIMEOUT="3",
    )
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            (owner,) = await signed_in(http, "staller@example.com", sessions=1)
            path = await with_events_dataset(http, owner)
            async with _stalled_ingests(server, path, owner, stalls) as stalled:
                await _until_receiving(http, stalls)
                ready = await _promptly(http.get("/health/ready"), "readiness")
                assert ready.status_code == 200, ready.text
                await _promptly(signed_in(http, "other@example.com", sessions=1), "sign-up")
                assert await checked_out(http) == 0

                statuses = [await request.status(within=STALL_SECONDS + 10) for request in stalled]
                assert statuses == [408] * stalls
            assert await _rows_in(http, owner, "events") == 0


async def test_too_many_ingests_at_once_is_429_before_the_body(
    database_url: str, tmp_path: Path
) -> None:
    stall = 3  # long enough for the load below on a busy machine
    env = _budget_env(
        database_url,
        tmp_path / "data",
        MAX_CONCURRENT_INGESTS_PER_USER="2",
        BODY_READ_TIMEOUT_SECONDS=str(stall),
    )
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            (owner,) = await signed_in(http, "busy@example.com", sessions=1)
            path = await with_events_dataset(http, owner)
            rows = event_rows(range(10), client=1)
            async with _stalled_ingests(server, path, owner, 2) as stalled:
                await _until_receiving(http, 2)
                third = await http.post(path, json=rows, headers=owner, params=SKIP)
                assert third.status_code == 429
                assert third.headers["Retry-After"] == "1"
                assert third.json()["code"] == "too_many_ingests"
                assert "MAX_CONCURRENT_INGESTS_PER_USER" in third.json()["detail"]
                for request in stalled:
                    assert await request.status(within=stall + 5) == 408
            after = await http.post(path, json=rows, headers=owner, params=SKIP)
            assert after.status_code == 201, "the slots are free again"


@pytest.mark.backends("sqlite")  # refused before any handler runs: no database plays a part
async def test_a_huge_body_is_413_before_it_is_read(database_url: str, tmp_path: Path) -> None:
    env = _budget_env(database_url, tmp_path / "data")
    headers = {"Content-Type": "application/json"}
    with running_server(env, tmp_path / "server.log") as server:
        huge = await _RawRequest.send(
            server, "/api/v1/auth/register", headers=headers, declared=300 * 10**6, body=_START
        )
        try:
            assert await huge.status(within=PROMPT) == 413
            assert await huge.closed_by_server(within=PROMPT)
        finally:
            await huge.close()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            chunked = await http.post(
                "/api/v1/auth/register", content=_chunks(2 * 1024**2), headers=headers
            )
            assert chunked.status_code == 413
            assert chunked.json()["code"] == "payload_too_large"
            assert "MAX_BODY_BYTES" in chunked.json()["detail"]
            await register(http, "small@example.com")


@pytest.mark.backends("sqlite")  # refused before any handler runs: no database plays a part
async def test_a_body_trickling_in_below_the_minimum_rate_is_408(
    database_url: str, tmp_path: Path
) -> None:
    env = _budget_env(
        database_url,
        tmp_path / "data",
        BODY_READ_TIMEOUT_SECONDS="30",
        BODY_MIN_BYTES_PER_SECOND="1000",
        BODY_MIN_RATE_GRACE_SECONDS="1",
    )
    headers = {"Content-Type": "application/json"}
    with running_server(env, tmp_path / "server.log") as server:
        slow = await _RawRequest.send(
            server, "/api/v1/auth/register", headers=headers, declared=5000, body=_START
        )
        trickle = asyncio.ensure_future(_trickle(slow))
        try:
            answer = await slow.answer(within=10)
        finally:
            trickle.cancel()
            await slow.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert b"BODY_MIN_BYTES_PER_SECOND" in answer


async def _trickle(request: _RawRequest) -> None:
    """A few bytes every 0.2 s: 50 bytes a second, alive but far below the minimum rate."""
    with contextlib.suppress(ConnectionError):
        while True:
            request.writer.write(b"x" * 10)
            await request.writer.drain()
            await asyncio.sleep(0.2)


_START = b'{"email": "big@example.com", "password": "long enough password", "full_name": "'


async def _chunks(size: int) -> AsyncIterator[bytes]:
    """A JSON body of ``size`` bytes, sent chunked (no Content-Length)."""
    yield _START
    for _ in range(size // 65536):
        yield b"x" * 65536
    yield b'"}'


def _memory_kib(server: Server, field: str) -> int:
    """VmRSS or VmHWM of the server process, in KiB."""
    status = Path(f"/proc/{server.process.pid}/status").read_text(encoding="ascii")
    line = next(line for line in status.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


async def test_a_large_json_array_is_read_in_flat_memory_off_the_event_loop(
    database_url: str, tmp_path: Path
) -> None:
    rows = event_rows(range(300_000), client=1)  # 18 MB of JSON: +160 MB when parsed whole
    body = orjson.dumps(rows)
    env = _budget_env(database_url, tmp_path / "data", INGEST_BATCH_ROWS="1000")
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            (owner,) = await signed_in(http, "bulk@example.com", sessions=1)
            path = await with_events_dataset(http, owner)
            await http.post(path, json=event_rows([-1], client=0), headers=owner)  # warm up
            before = _memory_kib(server, "VmRSS")
            load = asyncio.ensure_future(
                http.post(path, content=body, headers={**owner, "Content-Type": "application/json"})
            )
            slowest = 0.0
            while not load.done():
                started = time.monotonic()
                assert (await http.get("/health")).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                await asyncio.sleep(0.02)  # a steady probe, not a busy loop beside the server
            loaded = await load
            peak = _memory_kib(server, "VmHWM")
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["inserted"] == len(rows)
    growth_mib = (peak - before) / 1024
    assert growth_mib < 80, (
        f"the server grew by {growth_mib:.0f} MiB for a {len(body) >> 20} MiB body"
    )
    assert slowest < PROMPT, f"/health waited {slowest:.2f} s during the load"
