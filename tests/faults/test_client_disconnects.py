"""Clients that hang up mid-request, a thousand times: every connection they held goes back to
the pool, no transaction is left open, no hang-up is taken for a server error, and the server
goes on answering."""

from __future__ import annotations

import asyncio
import functools
import itertools
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url

from tests.faults.harness import (
    ROWS,
    checked_out,
    event_rows,
    requests_handled,
    server_env,
    signed_in,
    wait_until,
    with_events_dataset,
    with_numbers_dataset,
)
from tests.faults.postgres import sessions_by_state
from tests.support.processes import running_server

pytestmark = pytest.mark.slow

DISCONNECTS = 1000
AT_ONCE = 50
INGEST = ROWS.format(name="events")
QUERY = "/api/v1/query"


async def test_a_thousand_hang_ups_leave_no_connection_checked_out(
    database_url: str, tmp_path: Path, backend: str
) -> None:
    env = server_env(
        database_url,
        tmp_path / "data",
        DB_POOL_SIZE="5",
        DB_MAX_OVERFLOW="5",
        QUERY_MAX_CONCURRENT_PER_USER=str(AT_ONCE),
    )
    with running_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            (headers,) = await signed_in(http, "leaver@example.com", sessions=1)
            await with_events_dataset(http, headers)
            await with_numbers_dataset(http, headers, 200)
            before = await requests_handled(http)
            await _hang_up_in_waves(http, server.base_url, headers["Authorization"])

            await wait_until(lambda: _none_checked_out(http), within=10, what="connections back")
            if backend == "postgresql":
                database = make_url(database_url).database
                assert database
                sessions = await sessions_by_state(database)
                assert set(sessions) <= {"idle"}, f"sessions left busy: {sessions}"
            handled = await requests_handled(http)
            me = await http.get("/api/v1/users/me", headers=headers)
            written = await http.post(INGEST, json=event_rows([0], client=0), headers=headers)
            asked = await http.post(
                QUERY, json={"sql": "SELECT count(*) FROM numbers"}, headers=headers
            )

    left = {
        key: n - before.get(key, 0)
        for key, n in handled.items()
        if key[0] in (ROWS, QUERY) and n > before.get(key, 0)
    }
    assert sum(left.values()) == DISCONNECTS
    assert left.get((ROWS, "499"), 0) > 0, f"no ingest was cut off inside its body: {left}"
    assert not [key for key in left if key[1] == "500"], f"hang-ups taken for bugs: {left}"
    assert "request.unhandled_error" not in server.output()
    assert me.status_code == 200, me.text
    assert written.status_code == 201, written.text
    assert asked.json()["rows"] == [[200]]


async def _hang_up_in_waves(http: httpx.AsyncClient, base_url: str, authorization: str) -> None:
    """``AT_ONCE`` clients at a time each send a request, or part of one, and close the
    connection unread. A wave goes once the server has finished the one before the last,
    so hang-ups meet requests the server is working on, not a long queue of them."""
    port = make_url(base_url).port
    assert port
    requests = _hang_ups(authorization)
    before = await _handled(http)
    waves = DISCONNECTS // AT_ONCE
    for wave in range(waves + 1):
        if wave < waves:
            await asyncio.gather(*(_hang_up(port, *next(requests)) for _ in range(AT_ONCE)))
        await wait_until(
            functools.partial(_handled_at_least, http, before + wave * AT_ONCE),
            within=30,
            what=f"the server to finish {wave * AT_ONCE} hang-ups",
        )


def _hang_ups(authorization: str) -> itertools.cycle[tuple[bytes, int]]:
    """Requests, and how many of their bytes to send before hanging up: an ingest cut off
    inside its body (with a load slot held while the body is spooled), a whole ingest, and
    a query."""
    rows = orjson.dumps(event_rows(range(10**6, 10**6 + 50), client=1))
    ingest = _request(INGEST, authorization, rows)
    query = _request(QUERY, authorization, orjson.dumps({"sql": "SELECT count(*) FROM numbers"}))
    return itertools.cycle(
        [(ingest, len(ingest) - len(rows) // 2), (ingest, len(ingest)), (query, len(query))]
    )


def _request(path: str, authorization: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _hang_up(port: int, request: bytes, send: int) -> None:
    """Send the first ``send`` bytes of ``request`` and close the connection unread."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request[:send])
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _none_checked_out(http: httpx.AsyncClient) -> bool:
    return await checked_out(http) == 0


async def _handled(http: httpx.AsyncClient) -> float:
    handled = await requests_handled(http)
    return sum(n for (route, _), n in handled.items() if route in (ROWS, QUERY))


async def _handled_at_least(http: httpx.AsyncClient, count: float) -> bool:
    return await _handled(http) >= count
