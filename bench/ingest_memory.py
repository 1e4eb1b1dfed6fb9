"""A server's memory and responsiveness while it loads one large JSON array of rows.

Starts ``tablehouse serve`` on a fresh SQLite file (or ``--database-url``), posts one JSON
array of ``--rows`` rows (about 130 bytes each: 800,000 rows are ~100 MB), and reports
the server's resident memory before and its peak (VmHWM) after, and the slowest answer to
``GET /health`` polled meanwhile. Linux only (reads /proc/<pid>/status).

Run: ``uv run python bench/ingest_memory.py [--rows N] [--database-url URL]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from tablehouse.config import load_settings
from tablehouse.core import migrations

PASSWORD = "benchmark password"
FIELDS = [
    {"name": "id", "type": "integer", "primary_key": True},
    {"name": "name", "type": "string"},
    {"name": "price", "type": "float"},
    {"name": "quantity", "type": "integer"},
    {"name": "category", "type": "string"},
    {"name": "attributes", "type": "json"},
]


def _rows(count: int) -> Iterator[bytes]:
    """The array, a piece at a time, so the client holds little of it."""
    yield b"["
    for start in range(0, count, 10_000):
        piece = [
            {
                "id": n,
                "name": f"product {n}",
                "price": round(n * 0.37 % 1000, 2),
                "quantity": n % 97,
                "category": f"category {n % 13}",
                "attributes": {"colour": "blue", "size": n % 7},
            }
            for n in range(start, min(start + 10_000, count))
        ]
        yield (b"," if start else b"") + orjson.dumps(piece)[1:-1]
    yield b"]"


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(database_url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    migrations.upgrade(load_settings(_env_file=None, database_url=database_url, data_dir=folder))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEHOUSE_")}
    env.update(
        DATABASE_URL=database_url, DATA_DIR=str(folder), LOG_LEVEL="WARNING",
        ANALYTICS_ENABLED="false",
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "tablehouse", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


class _Prober(threading.Thread):
    """GET /health in a loop until stopped; keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.slowest, self.stopped = url, 0.0, threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.stopped.is_set():
                started = time.perf_counter()
                client.get("/health")
                self.slowest = max(self.slowest, time.perf_counter() - started)
                time.sleep(0.02)


def measure(url: str, pid: int, rows: int) -> dict[str, float]:
    client = httpx.Client(base_url=url, timeout=3600)
    client.post("/api/v1/auth/register", json={"email": "m@example.com", "password": PASSWORD})
    login = {"email": "m@example.com", "password": PASSWORD}
    token = client.post("/api/v1/auth/login", json=login).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    assert client.post("/api/v1/schemas", json={"name": "items", "fields": FIELDS}).is_success
    body_bytes = sum(len(piece) for piece in _rows(rows))
    before = _memory_kib(pid, "VmRSS")
    prober = _Prober(url)
    prober.start()
    started = time.perf_counter()
    response = client.post(
        "/api/v1/schemas/items/rows",
        content=_rows(rows),
        headers={"Content-Type": "application/json"},
    )
    seconds = time.perf_counter() - started
    prober.stopped.set()
    prober.join()
    assert response.status_code == 201, response.text[:500]
    return {
        "body_mib": body_bytes / 1024**2,
        "seconds": seconds,
        "rss_before_mib": before / 1024,
        "peak_mib": _memory_kib(pid, "VmHWM") / 1024,
        "slowest_health_s": prober.slowest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="th-bench-memory-") as folder:
        database_url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        process, url = _serve(database_url, Path(folder))
        try:
            found = measure(url, process.pid, args.rows)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"{args.rows:,} rows, {found['body_mib']:.0f} MiB of JSON in {found['seconds']:.1f} s")
    print(
        f"server RSS before {found['rss_before_mib']:.0f} MiB, peak {found['peak_mib']:.0f} MiB "
        f"(+{found['peak_mib'] - found['rss_before_mib']:.0f} MiB); "
        f"slowest /health meanwhile {found['slowest_health_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
