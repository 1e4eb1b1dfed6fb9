"""How much a hostile request can grow the server: resident memory of a real server process.

Each case gets a ``tablehouse serve`` process of its own on one database (SQLite by
default, PostgreSQL with ``--backend postgresql``): once it has answered a first sign-in and
query, its resident memory is the baseline and its peak is reset (``/proc/<pid>/clear_refs``);
the case's figure is how far the peak (``VmHWM``) then rose above the baseline. Issue 13 asks
for less than 300 MB for each of:

- a JSON array of rows (``--ingest-mib``, 1024 by default) POSTed as one body, streamed;
- the answers that fetched too much: ``repeat('x', 1000000)`` on 20,000 generated rows; a
  value multiplied past the guard (nested ``hex`` on SQLite, ``replace(repeat(...))`` on
  PostgreSQL); ten distinct 60 KB statements (refused by QUERY_MAX_SQL_LENGTH now;
  ``bench/sql_checks.py`` measures the statement cache at the caps).

Run: ``uv run python bench/memory.py [--backend sqlite|postgresql] [--ingest-mib N]``

``--resident`` measures something else: the resident memory (``VmRSS``) of a real ``tablehouse
serve`` process on SQLite, once it has started and after N queries (``--queries``, 10,000 by
default: ``POST /api/v1/query`` with an API key, point queries on an ``events`` table of
10,000 rows, 4 at a time), with the embedded analytics store (the default) and with
``ANALYTICS_ENABLED=false``. Issue 16 asks for at most 250 MB after start with the embedded
store, 350 MB after 10,000 queries. Each figure is split into anonymous memory and file pages
(``RssAnon``/``RssFile``: libraries' code, which the kernel may drop and read back), and says
whether chDB's library is mapped. "idle" is the same server a metrics sample later (its
first write to the store opens chDB). When Datasette is importable, it is measured the same
way on the same rows (``GET /<db>.json?sql=``). Run: ``uv run python bench/memory.py
--resident [--queries N]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import query as query_bench  # bench/query.py: this script's folder is first on sys.path
from sqlalchemy.engine import make_url

PASSWORD = "benchmark password"
FIELDS = [
    {"name": "id", "type": "integer", "primary_key": True},
    {"name": "name", "type": "string"},
    {"name": "price", "type": "float"},
    {"name": "tags", "type": "json"},
]
BUDGET_MB = 300
ROWS_PER_CHUNK = 2000

WIDE_ANSWER = (
    "with recursive r(n) as (select 1 union all select n + 1 from r where n < 20000) "
    "select n, {repeat} from r"
)
AMPLIFIED = {
    "sqlite": "select length(" + "hex(" * 8 + "zeroblob(1000000)" + ")" * 8 + ")",
    "postgresql": "select length(replace(repeat('a', 1000000), 'a', repeat('b', 300)))",
}
REPEAT = {"sqlite": "hex(zeroblob(500000))", "postgresql": "repeat('x', 1000000)"}


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last reset) in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


def _resident(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile in MB, and whether chDB's library is mapped."""
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            figures[name] = int(value.split()[0]) * 1024 / 1e6
    figures["chdb"] = float("_chdb." in Path(f"/proc/{pid}/maps").read_text())
    return figures


def _reset_peak(pid: int) -> None:
    """The peak so far is start-up's (imports, checks): from here on it is the case's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextmanager
def _server(database_url: str, folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server on ``database_url`` (analytics off, ingest and time limits raised so that
    they do not cut a case short), stopped when the block ends."""
    port = query_bench._free_port()
    env = query_bench._server_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(folder),
        LOG_LEVEL="WARNING",
        ANALYTICS_ENABLED="false",
        MAX_INGEST_BYTES=str(4 * 1024**3),
        QUERY_TIMEOUT_MS="60000",
    )
    command = [sys.executable, "-m", "tablehouse", "serve", "--port", str(port)]
    with query_bench._process(command, env, port, folder / f"server-{port}.log") as process:
        yield process, f"http://127.0.0.1:{port}"


async def _json_array(total_bytes: int) -> AsyncIterator[bytes]:
    """``[{...}, {...}, ...]`` of about ``total_bytes``, made as it is sent."""
    yield b"["
    sent, n = 1, 0
    while sent < total_bytes:
        rows = [
            b'{"id": %d, "name": "product %d with a longer name", "price": %d.25, '
            b'"tags": {"colour": "blue", "sizes": [1, 2, 3]}}' % (i, i, i % 1000)
            for i in range(n, n + ROWS_PER_CHUNK)
        ]
        chunk = (b"," if n else b"") + b",".join(rows)
        n += ROWS_PER_CHUNK
        sent += len(chunk)
        yield chunk
        await asyncio.sleep(0)
    yield b"]"


async def _signed_in(http: httpx.AsyncClient) -> dict[str, str]:
    """Sign in (registering and making the dataset the first time)."""
    email = "memory@example.com"
    await http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    token = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    await http.post("/api/v1/schemas", json={"name": "items", "fields": FIELDS}, headers=headers)
    return headers


Case = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[str]]


async def _measure(url: str, pid: int, case: Case) -> tuple[float, float, str]:
    """Peak growth above the warmed-up baseline in MB, seconds, and what the server said."""
    async with httpx.AsyncClient(base_url=url, timeout=3600) as http:
        headers = await _signed_in(http)
        await http.post("/api/v1/query", json={"sql": "select 1"}, headers=headers)
        baseline = _status(pid)["VmRSS"]
        _reset_peak(pid)
        started = time.perf_counter()
        outcome = await case(http, headers)
        seconds = time.perf_counter() - started
    return max(_status(pid)["VmHWM"] - baseline, 0) / 1024, seconds, outcome


def _cases(backend: str, ingest_mib: int) -> dict[str, Case]:
    async def ingest(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
        response = await http.post(
            "/api/v1/schemas/items/rows",
            content=_json_array(ingest_mib * 1024**2),
            headers={**headers, "Content-Type": "application/json"},
            params={"on_conflict": "update"},
        )
        body = response.json()
        return f"{response.status_code} {body.get('inserted', body.get('code'))} rows"

    def query(sql: str) -> Case:
        async def run(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
            response = await http.post("/api/v1/query", json={"sql": sql}, headers=headers)
            body = response.json()
            shown = body.get("code") or f"{body['row_count']} rows, truncated={body['truncated']}"
            return f"{response.status_code} {shown}"

        return run

    async def statements(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
        answers = set()
        for n in range(10):
            listed = ", ".join(str(n * 100_000 + i) for i in range(8000))
            sql = f"select count(*) from items where id in ({listed}"[:60_000].rsplit(",", 1)[0]
            response = await http.post("/api/v1/query", json={"sql": sql + ")"}, headers=headers)
            answers.add(f"{response.status_code} {response.json().get('code', '')}".strip())
        return ", ".join(sorted(answers))

    return {
        f"JSON array ingest, {ingest_mib} MiB": ingest,
        "wide answer (20,000 rows x 1 MB)": query(WIDE_ANSWER.format(repeat=REPEAT[backend])),
        "amplified value": query(AMPLIFIED[backend]),
        "10 distinct 60 KB statements": statements,
    }


RESIDENT_ROWS = 10_000
RESIDENT_CONCURRENCY = 4  # QUERY_MAX_CONCURRENT_PER_USER, by default
START_BUDGET_MB, LOADED_BUDGET_MB = 250, 350
SAMPLE_SECONDS = 2  # METRICS_SAMPLE_INTERVAL_SECONDS in the resident runs: "idle" waits for it


async def _queries(n: int, send: Callable[[int], Awaitable[int]]) -> None:
    """``n`` point queries, ``RESIDENT_CONCURRENCY`` at a time; each must answer 200."""
    ids = iter(range(n))
    failed: list[int] = []

    async def worker() -> None:
        for _ in ids:
            status = await send(random.randint(1, RESIDENT_ROWS))
            if status != 200:
                failed.append(status)

    await asyncio.gather(*(worker() for _ in range(RESIDENT_CONCURRENCY)))
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} queries failed: {sorted(set(failed))}")


def _settle(pid: int) -> dict[str, float]:
    """RSS once it has stopped moving (a second apart, within 1 MB; at most 10 s)."""
    last = _resident(pid)
    for _ in range(10):
        time.sleep(1)
        now = _resident(pid)
        if abs(now["VmRSS"] - last["VmRSS"]) < 1:
            return now
        last = now
    return last


def _tablehouse_resident(folder: Path, analytics: bool, n: int) -> list[dict[str, float]]:
    """RSS after start, idle a metrics sample later, and after ``n`` queries."""
    case = folder / ("analytics-on" if analytics else "analytics-off")
    case.mkdir()
    database_url = f"sqlite+aiosqlite:///{case / 'memory.db'}"
    env = query_bench._server_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(case),
        LOG_LEVEL="WARNING",
        ANALYTICS_ENABLED=str(analytics).lower(),
        METRICS_SAMPLE_INTERVAL_SECONDS=str(SAMPLE_SECONDS),
    )
    subprocess.run(
        [sys.executable, "-m", "tablehouse", "db", "upgrade"],
        env={**env, "LOG_LEVEL": "ERROR"},
        check=True,
        capture_output=True,
    )
    port = query_bench._free_port()
    command = [sys.executable, "-m", "tablehouse", "serve", "--port", str(port)]
    with query_bench._process(command, env, port, case / "server.log") as process:
        started = _settle(process.pid)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            key = query_bench._prepare_dataset(client, RESIDENT_ROWS)
        time.sleep(SAMPLE_SECONDS * 2)  # a metrics sample, written (or logged)
        idle = _settle(process.pid)

        async def run() -> None:
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
            ) as http:

                async def send(row: int) -> int:
                    sql = "select * from events where id = :id"
                    body = {"sql": sql, "params": {"id": row}}
                    return (await http.post("/api/v1/query", json=body)).status_code

                await _queries(n, send)

        asyncio.run(run())
        loaded = _settle(process.pid)
    return [started, idle, loaded]


def _datasette_resident(folder: Path, n: int) -> list[dict[str, float]] | None:
    """The same for Datasette on the same rows, or None when it is not installed."""
    if importlib.util.find_spec("datasette") is None:
        return None
    database = folder / "events.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "create table events (id integer primary key, user_id integer not null, "
            "kind text, amount real)"
        )
        lines = query_bench._csv(RESIDENT_ROWS).decode().splitlines()[1:]
        connection.executemany(
            "insert into events values (?, ?, ?, ?)", (line.split(",") for line in lines)
        )
    port = query_bench._free_port()
    command = [sys.executable, "-m", "datasette", "serve", str(database), "--port", str(port)]
    env = query_bench._server_env()
    with query_bench._process(command, env, port, folder / "datasette.log") as process:
        started = _settle(process.pid)

        async def run() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

                async def send(row: int) -> int:
                    params = {"sql": "select * from events where id = :id", "id": str(row)}
                    return (await http.get("/events.json", params=params)).status_code

                await _queries(n, send)

        asyncio.run(run())
        loaded = _settle(process.pid)
    return [started, started, loaded]


def _resident_report(n: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tablehouse-resident-"))
    rows = {
        "Tablehouse, embedded analytics (default)": _tablehouse_resident(folder, True, n),
        "Tablehouse, ANALYTICS_ENABLED=false": _tablehouse_resident(folder, False, n),
    }
    peer = _datasette_resident(folder, n)
    if peer is not None:
        rows["Datasette (same rows)"] = peer
    today = datetime.now(UTC).date().isoformat()
    machine = f"{platform.platform()} · {os.cpu_count()} cores"
    print(f"{today} · {machine} · Python {platform.python_version()}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(
        f"SQLite; {RESIDENT_ROWS:,} rows; {n:,} point queries, {RESIDENT_CONCURRENCY} at a "
        f"time; budget (embedded analytics): {START_BUDGET_MB} MB after start, "
        f"{LOADED_BUDGET_MB} MB after 10,000 queries\n"
    )
    print(
        "| server | after start, MB (anon + file) | idle after a metrics sample, MB | "
        f"after {n:,} queries, MB | chDB mapped (start / idle / end) |"
    )
    print("|---|---:|---:|---:|---|")

    def shown(figures: dict[str, float]) -> str:
        return f"{figures['VmRSS']:,.0f} ({figures['RssAnon']:,.0f} + {figures['RssFile']:,.0f})"

    for name, (started, idle, loaded) in rows.items():
        mapped = " / ".join("yes" if f["chdb"] else "no" for f in (started, idle, loaded))
        idle_shown = "n/a" if idle is started else shown(idle)
        print(f"| {name} | {shown(started)} | {idle_shown} | {shown(loaded)} | {mapped} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--ingest-mib", type=int, default=1024)
    parser.add_argument(
        "--resident", action="store_true", help="RSS after start and after --queries queries"
    )
    parser.add_argument("--queries", type=int, default=10_000)
    args = parser.parse_args()
    if args.resident:
        _resident_report(args.queries)
        return
    folder = Path(tempfile.mkdtemp(prefix="tablehouse-memory-"))
    database = f"th_bench_{uuid.uuid4().hex[:8]}"
    if args.backend == "postgresql":
        asyncio.run(query_bench._admin(f"CREATE DATABASE {database}"))
        pg_url = make_url(query_bench.ADMIN_URL).set(
            drivername="postgresql+asyncpg", database=database
        )
        database_url = pg_url.render_as_string(hide_password=False)
    else:
        database_url = f"sqlite+aiosqlite:///{folder / 'memory.db'}"
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(folder)}
    subprocess.run([sys.executable, "-m", "tablehouse", "db", "upgrade"], env=env, check=True)
    results = []
    try:
        for name, case in _cases(args.backend, args.ingest_mib).items():
            with _server(database_url, folder) as (process, url):
                results.append((name, *asyncio.run(_measure(url, process.pid, case))))
    finally:
        if args.backend == "postgresql":
            asyncio.run(query_bench._drop_database(database))
    today = datetime.now(UTC).date().isoformat()
    machine = f"{platform.platform()} · {os.cpu_count()} cores"
    print(f"{today} · {machine} · Python {platform.python_version()}")
    print(f"backend {args.backend}, JSON ingest {args.ingest_mib} MiB, budget {BUDGET_MB} MB\n")
    print("| case | peak RSS growth (MB) | within budget | seconds | answer |")
    print("|---|---:|---|---:|---|")
    for name, growth, seconds, outcome in results:
        within = "yes" if growth < BUDGET_MB else "**no**"
        print(f"| {name} | {growth:,.0f} | {within} | {seconds:.1f} | {outcome} |")


if __name__ == "__main__":
    main()
