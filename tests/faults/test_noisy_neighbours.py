"""One client's stalled uploads and heavy statements do not stop anyone else.

32 uploads that announce a large body, send a few bytes and go silent, and 4 of the heaviest
statements the guard will look at, all at once against one real server: meanwhile another
user's login, ``/users/me``, a small query and ``/health`` each answer within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tablehouse.config import Settings
from tests.faults.harness import (
    ingests_in_progress,
    server_env,
    signed_in,
    wait_until,
    with_events_dataset,
)
from tests.support.accounts import bearer, login
from tests.support.processes import running_server

pytestmark = pytest.mark.slow

STALLED_UPLOADS = 32
HEAVY_CHECKS = 4
# Generous, so that it holds on a slow CI machine; a stalled write lock or a blocked event
# loop costs the busy timeout (5 s) or the whole check (seconds).
ANSWER_WITHIN = 1.0
MEASUREMENTS = 3
T = TypeVar("T")


async def test_stalled_uploads_and_heavy_checks_do_not_slow_other_users(
    database_url: str, tmp_path: Path
) -> None:
    env = server_env(
        database_url,
        tmp_path / "data",
        # Four attackers with eight uploads each: every upload is really held open.
        MAX_CONCURRENT_INGESTS_PER_USER="8",
        QUERY_MAX_CONCURRENT_PER_USER=str(HEAVY_CHECKS),
        # The uploads would be cut off after 10-20 s (408): here they are held open for the
        # whole measurement, on purpose.
        BODY_READ_TIMEOUT_SECONDS="120",
        BODY_MIN_BYTES_PER_SECOND="0",
    )
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            attackers = [
                (await signed_in(http, f"attacker{n}@example.com", sessions=1))[0]
                for n in range(STALLED_UPLOADS // 8)
            ]
            rows_paths = [
                await with_events_dataset(http, headers, name="events") for headers in attackers
            ]
            (bystander,) = await signed_in(http, "bystander@example.com", sessions=1)
            await with_events_dataset(http, bystander, name="mine")
            heavy = _heaviest_statement(_default("query_max_sql_tokens"))

            async with _stalled_uploads(server.base_url, attackers, rows_paths) as uploads:
                await wait_until(
                    lambda: _all_receiving(http),
                    within=30,
                    what="every stalled upload to be received by the server",
                )
                measured = asyncio.Event()
                checks = [
                    asyncio.create_task(_check_until(measured, http, attackers[0], heavy))
                    for _ in range(HEAVY_CHECKS)
                ]
                try:
                    timings = [
                        await _bystander_timings(http, bystander) for _ in range(MEASUREMENTS)
                    ]
                finally:
                    measured.set()
                    answers = await asyncio.gather(*checks, return_exceptions=True)
                answered_heavy = [response for done in answers for response in _ok(done)]
                still_open = sum(1 for writer in uploads if not writer.is_closing())

    assert still_open == STALLED_UPLOADS, "the uploads were not held open while measured"
    assert answered_heavy, "no heavy statement was checked while the others were measured"
    for response in answered_heavy:
        assert response.status_code in (200, 400), response.text
    worst = {name: max(round_[name] for round_ in timings) for name in timings[0]}
    for name, seconds in worst.items():
        assert seconds < ANSWER_WITHIN, f"{name} took {seconds:.2f} s: {worst}"


async def _all_receiving(http: httpx.AsyncClient) -> bool:
    return await ingests_in_progress(http) == STALLED_UPLOADS


def _default(setting: str) -> int:
    default = Settings.model_fields[setting].default
    assert isinstance(default, int)
    return default


def _heaviest_statement(max_tokens: int) -> str:
    """An ``OR`` chain as long as QUERY_MAX_SQL_TOKENS allows: the costliest text to check
    (11 tokens, then 4 per term)."""
    head, term = "SELECT count(*) FROM events WHERE 1 = 1", " OR 1 = 1"
    return head + term * ((max_tokens - 11) // 4)


@contextlib.asynccontextmanager
async def _stalled_uploads(
    base_url: str, attackers: list[dict[str, str]], paths: list[str]
) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """Raw connections that each send the headers of a 100 MB upload and 10 bytes of it."""
    host, port = base_url.removeprefix("http://").split(":")
    writers: list[asyncio.StreamWriter] = []
    try:
        for n in range(STALLED_UPLOADS):
            headers, path = attackers[n % len(attackers)], paths[n % len(paths)]
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                (
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: {headers['Authorization']}\r\n"
                    "Content-Type: application/x-ndjson\r\n"
                    f"Content-Length: {100 * 1024**2}\r\n\r\n"
                    '{"id": 1, '
                ).encode()
            )
            await writer.drain()
            writers.append(writer)
        yield writers
    finally:
        for writer in writers:
            writer.close()


async def _bystander_timings(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, float]:
    """Seconds each of another user's everyday requests took (each must succeed)."""
    token = await _timed(lambda: login(http, "bystander@example.com"))
    session = bearer(token[0]["access_token"])
    timings = {"login": token[1]}
    steps: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        "/users/me": lambda: http.get("/api/v1/users/me", headers=session),
        "small query": lambda: _query(http, headers, "SELECT count(*) FROM mine"),
        "/health": lambda: http.get("/health"),
        "load rows": lambda: http.post(
            "/api/v1/schemas/mine/rows",
            json=[{"id": len(timings), "client": 0}],
            headers=headers,
            params={"on_conflict": "update"},
        ),
    }
    for name, step in steps.items():
        response, seconds = await _timed(step)
        assert response.status_code in (200, 201), f"{name}: {response.text}"
        timings[name] = seconds
    return timings


async def _timed(step: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.monotonic()
    outcome = await asyncio.wait_for(step(), timeout=30)
    return outcome, time.monotonic() - started


def _ok(outcome: list[httpx.Response] | BaseException) -> list[httpx.Response]:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


async def _check_until(
    done: asyncio.Event, http: httpx.AsyncClient, headers: dict[str, str], sql: str
) -> list[httpx.Response]:
    """Send the heavy statement again and again, each time a little different (a statement
    already checked is not checked again), until ``done``: the load lasts as long as the
    measurement."""
    answers: list[httpx.Response] = []
    while not answers or not done.is_set():
        distinct = sql.replace("WHERE 1 = 1", f"WHERE {len(answers)} = 1", 1)
        answers.append(await _query(http, headers, distinct))
    return answers


async def _query(http: httpx.AsyncClient, headers: dict[str, str], sql: str) -> httpx.Response:
    return await http.post("/api/v1/query", json={"sql": sql}, headers=headers)
