"""PostgreSQL going away under a real server: nothing acknowledged is lost, every failure is
a retryable 503 (also when the database stops answering altogether), and the server heals by
itself once the database is back (and, with every session ended while the pool is idle, at
once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.faults.harness import (
    event_rows,
    server_env,
    signed_in,
    wait_until,
    with_events_dataset,
)
from tests.faults.postgres import RestartingPostgres, sessions_by_state, terminate_backends
from tests.support import databases
from tests.support.databases import connected, settings_for
from tests.support.processes import running_server
from tests.support.row_tables import layout_of

# One worker runs the module: its server is started once (module scope), not once per worker.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.backends("postgresql"),
    pytest.mark.xdist_group("postgres_outage"),
]

CLIENTS = 20
ROWS_PER_CLIENT = 250  # 5,000 in all
BATCH = 25
# The last batches of every client wait until the database has been back for SETTLE s, so
# the promise "no 5xx from then on" is tested on real traffic.
HELD_BACK_BATCHES = 2
SETTLE = 3.0
PHASE = 1.2  # seconds in each of the restart's phases; longer than Retry-After
RETRYABLE = {"database_unavailable", "database_busy"}
CONNECT_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    sent_at: float
    status: int  # 0: no HTTP answer at all
    retry_after: str | None
    code: str | None
    text: str


@dataclass
class Load:
    """What the clients sent and what they were told."""

    answers: list[Answer]
    acknowledged: set[int]
    settled: asyncio.Event

    def failures(self) -> list[Answer]:
        return [answer for answer in self.answers if not 200 <= answer.status < 300]


@dataclass
class Restart:
    ended: int  # sessions the shutdown ended
    phases: dict[str, float] = field(default_factory=dict)  # name -> start (monotonic)
    back_at: float = 0.0

    def phase_of(self, moment: float) -> str | None:
        started = [(at, name) for name, at in self.phases.items() if at <= moment]
        return max(started)[1] if started and moment < self.back_at else None


@dataclass(frozen=True, slots=True)
class Served:
    postgres: RestartingPostgres
    base_url: str
    database_url: str  # straight to the database, not through the front


@pytest.fixture(scope="module")
def served(
    backend: str, postgres_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server for this module's tests (starting one costs seconds), on a database of its
    own behind a restartable front. Each test signs up its own user and dataset."""
    name = databases.create_postgres_database(template=postgres_template)
    folder = tmp_path_factory.mktemp("outage")
    try:
        with RestartingPostgres(name) as postgres:
            env = server_env(
                postgres.url,
                folder / "data",
                DB_POOL_SIZE="5",
                DB_MAX_OVERFLOW="10",
                DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
            )
            with running_server(env, folder / "server.log") as server:
                yield Served(postgres, server.base_url, databases.postgres_url(name))
    finally:
        databases.drop_postgres_database(name)


@pytest.fixture
async def postgres(served: Served) -> AsyncIterator[RestartingPostgres]:
    """The front, reachable again after the test whatever the test did to it."""
    yield served.postgres
    await served.postgres.ready()


async def test_restart_under_ingest_loses_no_acknowledged_row_and_fails_only_with_503(
    served: Served, postgres: RestartingPostgres, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        sessions = await signed_in(http, "loader@example.com", sessions=CLIENTS)
        url = await with_events_dataset(http, sessions[0], name="restarted")
    load = Load([], set(), asyncio.Event())
    clients = [
        asyncio.create_task(_client(served.base_url, url, headers, number, load))
        for number, headers in enumerate(sessions)
    ]
    try:
        restart = await _restart_during(load, postgres)
    finally:
        load.settled.set()
        await asyncio.gather(*clients)

    unexpected = [a for a in load.failures() if not _retryable(a)]
    assert not unexpected, f"{len(unexpected)} non-retryable failures, e.g. {unexpected[:3]}"
    late = [a for a in load.failures() if a.sent_at >= restart.back_at + SETTLE]
    assert not late, f"{len(late)} failures {SETTLE} s after the database was back: {late[:3]}"
    assert restart.ended > 0, "the shutdown ended no session"
    felt = {restart.phase_of(a.sent_at) for a in load.failures()}
    assert felt >= set(restart.phases), f"phases no request failed in: {set(restart.phases) - felt}"
    stored = await _stored_ids(served.database_url, tmp_path, "restarted")
    assert load.acknowledged <= stored, f"lost: {sorted(load.acknowledged - stored)[:20]}"
    assert stored == set(range(CLIENTS * ROWS_PER_CLIENT))


async def test_sessions_ended_while_the_pool_idles_cost_the_next_requests_nothing(
    served: Served, postgres: RestartingPostgres
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        sessions = await signed_in(http, "idle@example.com", sessions=CLIENTS)
        url = await with_events_dataset(http, sessions[0], name="idled")
        warm = await _reads_and_writes(http, url, sessions, first_id=0)
        assert all(r.is_success for r in warm), [r.text for r in warm if not r.is_success]
        pooled = sum((await sessions_by_state(postgres.database)).values())

        ended = await terminate_backends(postgres.database)
        await wait_until(lambda: _no_sessions(postgres.database), within=10, what="sessions to end")
        after = await _reads_and_writes(http, url, sessions, first_id=CLIENTS)

    assert pooled > 1, "the pools held no idle connections to lose"
    assert ended == pooled
    failed = [(r.request.method, r.status_code, r.text) for r in after if not r.is_success]
    assert not failed, f"{len(failed)} of {len(after)} requests failed: {failed[:3]}"


async def test_a_database_that_stops_answering_is_503_within_the_connect_timeout(
    served: Served, postgres: RestartingPostgres
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        sessions = await signed_in(http, "patient@example.com", sessions=10)
        url = await with_events_dataset(http, sessions[0], name="unanswered")
        await postgres.stop_answering()
        started = time.monotonic()
        during = await _reads_and_writes(http, url, sessions, first_id=0)
        waited = time.monotonic() - started
        await postgres.ready()
        after = await _reads_and_writes(http, url, sessions, first_id=len(sessions))

    for response in during:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "1"
    # Each request gave up after one connection attempt, not after the pool timeout.
    assert waited < CONNECT_TIMEOUT + 2.0, waited
    assert all(r.is_success for r in after), [r.text for r in after if not r.is_success]


async def _reads_and_writes(
    http: httpx.AsyncClient, url: str, sessions: list[dict[str, str]], *, first_id: int
) -> list[httpx.Response]:
    """One request per session, all at once, half of them reads and half writes (to
    ``url``), so both pools are used and each needs several connections."""
    return list(
        await asyncio.gather(
            *(
                http.get("/api/v1/users/me", headers=headers)
                if number % 2
                else http.post(
                    url, json=event_rows([first_id + number], client=number), headers=headers
                )
                for number, headers in enumerate(sessions)
            )
        )
    )


async def _no_sessions(database: str) -> bool:
    return not await sessions_by_state(database)


async def _restart_during(load: Load, postgres: RestartingPostgres) -> Restart:
    """End every session once a fifth of the rows are in, restart once two fifths are."""
    total = CLIENTS * ROWS_PER_CLIENT
    await wait_until(lambda: len(load.acknowledged) >= total // 5, within=60, what="load")
    assert await terminate_backends(postgres.database) > 0
    await wait_until(lambda: len(load.acknowledged) >= 2 * total // 5, within=60, what="load")
    restart = Restart(ended=await postgres.shut_down())
    # Each phase outlasts a client's pause between retries, so that every phase meets
    # requests: the outage's length is the point here, not something to poll for.
    for name, next_phase in (
        ("shutting down", postgres.go_down),
        ("down", postgres.start_up),
        ("starting up", postgres.ready),
    ):
        restart.phases[name] = time.monotonic()
        await asyncio.sleep(PHASE)
        await next_phase()
    restart.back_at = time.monotonic()
    await asyncio.sleep(SETTLE)
    load.settled.set()
    return restart


async def _client(
    base_url: str, url: str, headers: dict[str, str], number: int, load: Load
) -> None:
    """Send this client's rows a batch at a time, each until it is acknowledged, waiting as
    ``Retry-After`` says. ``on_conflict=skip`` makes a retry safe when a 503 hid a commit."""
    first = number * ROWS_PER_CLIENT
    batches = [
        range(start, min(start + BATCH, first + ROWS_PER_CLIENT))
        for start in range(first, first + ROWS_PER_CLIENT, BATCH)
    ]
    async with httpx.AsyncClient(
        base_url=base_url, timeout=30, headers=headers, params={"on_conflict": "skip"}
    ) as http:
        for index, ids in enumerate(batches):
            if index >= len(batches) - HELD_BACK_BATCHES:
                await load.settled.wait()
            while True:
                answer = await _send(http, url, event_rows(ids, client=number))
                load.answers.append(answer)
                if 200 <= answer.status < 300:
                    load.acknowledged.update(ids)
                    break
                if not _retryable(answer):
                    return  # reported by the test; retrying would hide nothing more
                await asyncio.sleep(float(answer.retry_after or 1))


async def _send(http: httpx.AsyncClient, url: str, rows: list[dict[str, object]]) -> Answer:
    sent_at = time.monotonic()
    try:
        response = await http.post(url, json=rows)
    except httpx.TransportError as exc:
        return Answer(sent_at, 0, None, None, f"{type(exc).__name__}: {exc}")
    code = None
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        code = body.get("code") if isinstance(body, dict) else None
    text = "" if response.is_success else response.text[:300]
    return Answer(sent_at, response.status_code, response.headers.get("retry-after"), code, text)


def _retryable(answer: Answer) -> bool:
    return answer.status == 503 and bool(answer.retry_after) and answer.code in RETRYABLE


async def _stored_ids(database_url: str, tmp_path: Path, dataset: str) -> set[int]:
    """The ids in the dataset's table, read straight from the database (not through the
    front or the API)."""
    settings = settings_for(database_url, tmp_path / "check")
    table = (await layout_of(settings, dataset)).table
    async with connected(settings) as connection:
        return set((await connection.scalars(select(table.c.id))).all())
