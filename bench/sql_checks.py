"""SQL checks: their cost, the event loop while they run, and the memory the checked
statements keep (issue 13, findings 2 and 5).

Three measurements:

- **check time**, in this process: ``guard.analyse`` and ``guard.render`` (what a request
  does for a statement it has not met) for the issue's statements (a 100 KB ``OR 1=1`` chain,
  a 66 KB ``IN (...)`` list; with the default limits they are refused by their length before
  anything parses them) and for the worst statements the default limits let through
  (``QUERY_MAX_SQL_TOKENS`` tokens of each shape): wall and CPU time.
- **/health while 4 heavy statements are checked**: a real ``tablehouse serve`` on a SQLite
  file (limits raised so statements of just under 100,000 characters are checked in full, as
  before the limits existed); 4 distinct such statements are posted at once and ``/health``
  is asked again and again until they have all been answered: its median and worst wait.
- **server memory over distinct statements**: the same server (``--memory-limits``: default
  or raised) is sent N distinct statements (8,192 tokens each with the defaults, 66 KB with
  the limits raised), and its RSS is read from /proc after each.

Run the same script against another checkout with ``PYTHONPATH=<checkout>/src`` to compare.

Run: ``uv run python bench/sql_checks.py [--skip-checks] [--skip-server] [--statements 40]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

RAISED = {
    "QUERY_MAX_SQL_LENGTH": "100000",
    "QUERY_MAX_SQL_TOKENS": "100000",
    "QUERY_CHECK_TIMEOUT_MS": "600000",
}
PASSWORD = "bench password 1234"


def or_chain(terms: int, mark: int = 0) -> str:
    return f"SELECT {mark} WHERE 1 = 1" + " OR 1 = 1" * terms


def in_list(values: int, mark: int = 0) -> str:
    return f"SELECT {mark} WHERE 1 IN (" + ",".join(["1"] * values) + ")"


# --- check time, in this process -------------------------------------------------------------


def measure_checks() -> None:
    from tablehouse.config import Settings
    from tablehouse.errors import QueryRefused
    from tablehouse.query import guard

    settings = Settings()
    budget = getattr(guard, "Budget", None)
    limits = (
        budget(max_tokens=settings.query_max_sql_tokens, cpu_ms=settings.query_check_timeout_ms)
        if budget is not None
        else None
    )
    statements = {
        # A server refuses these by QUERY_MAX_SQL_LENGTH before the guard sees them; the
        # guard alone refuses them by their tokens, once tokenised.
        "issue: OR chain, 100 KB": or_chain(11_100),
        "issue: IN list, 66 KB": in_list(33_000),
        "at the token limit: OR chain": or_chain(2046),
        "at the token limit: IN list": in_list(4090),
        "at the token limit: columns": "SELECT " + ",".join(f"c{n}" for n in range(4094)),
    }
    print("statement | backend | characters | outcome | wall ms | CPU ms")
    for name, sql in statements.items():
        for backend in ("sqlite", "postgresql"):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                args = (sql, backend) if limits is None else (sql, backend, limits)
                analysis = guard.analyse(*args)
                guard.render(analysis, {"t": "ds_t"}, backend)
                outcome = "accepted"
            except QueryRefused as refused:
                outcome = refused.code
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times = f"{wall * 1000:.0f} | {cpu * 1000:.0f}"
            print(f"{name} | {backend} | {len(sql)} | {outcome} | {times}")


# --- a real server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(folder: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "DATA_DIR": str(folder),
        "ANALYTICS_ENABLED": "false",
        "JWT_SECRET": "bench-signing-secret-" + "x" * 32,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    command = [sys.executable, "-m", "tablehouse"]
    subprocess.run([*command, "db", "init"], env=env, check=True, capture_output=True)
    port = _free_port()
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/health", timeout=1)
            return server, base
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start; see " + str(folder / "server.log"))


async def _signed_in(http: httpx.AsyncClient) -> dict[str, str]:
    account = {"email": "bench@example.com", "password": PASSWORD}
    await http.post("/api/v1/auth/register", json={**account, "full_name": "Bench"})
    tokens = (await http.post("/api/v1/auth/login", json=account)).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1


async def _health_while_checking(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:
        headers = await _signed_in(http)

        async def heavy(sql: str) -> tuple[int, float]:
            started = time.monotonic()
            answer = await http.post("/api/v1/query", json={"sql": sql}, headers=headers)
            return answer.status_code, time.monotonic() - started

        statements = [
            in_list(33_000, 1),
            or_chain(11_000, 2),
            in_list(33_000, 3),
            or_chain(11_000, 4),
        ]
        tasks = [asyncio.create_task(heavy(sql)) for sql in statements]
        waits = []
        while not all(task.done() for task in tasks):
            started = time.monotonic()
            await http.get("/health")
            waits.append(time.monotonic() - started)
        answers = await asyncio.gather(*tasks)
    print("heavy statements (status, seconds):", [(s, round(t, 2)) for s, t in answers])
    print(
        f"/health while they were checked: {len(waits)} answers, median "
        f"{statistics.median(waits) * 1000:.0f} ms, worst {max(waits) * 1000:.0f} ms"
    )


async def _memory(base: str, pid: int, count: int, make: Callable[[int], str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:
        headers = await _signed_in(http)
        await http.post("/api/v1/query", json={"sql": "SELECT 1"}, headers=headers)
        start, growth, status = _rss_mb(pid), [], 0
        for mark in range(count):
            answer = await http.post("/api/v1/query", json={"sql": make(mark)}, headers=headers)
            status = answer.status_code
            growth.append(_rss_mb(pid) - start)
    print(f"RSS growth (MB) after each of {count} distinct statements (last status {status}):")
    print(" ", growth)


def measure_server(statements: int) -> None:
    for label, extra, make in (
        ("limits raised, 66 KB statements", RAISED, lambda m: in_list(33_000, m)),
        ("default limits, 8,192-token statements", {}, lambda m: in_list(4090, m)),
    ):
        folder = Path(tempfile.mkdtemp(prefix="sql-checks-"))
        server, base = _serve(folder, extra)
        try:
            print(f"--- {label}")
            if extra:
                asyncio.run(_health_while_checking(base))
            asyncio.run(_memory(base, server.pid, statements, make))
        finally:
            server.terminate()
            server.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--statements", type=int, default=40)
    options = parser.parse_args()
    if not options.skip_checks:
        measure_checks()
    if not options.skip_server:
        measure_server(options.statements)


if __name__ == "__main__":
    main()
