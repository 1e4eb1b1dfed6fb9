"""Row ingest speed on PostgreSQL, against baselines measured in the same run.

1. CSV: N rows x 5 columns POSTed over HTTP to a real ``tablehouse serve`` process, against
   ``psql \\copy`` of the same file into an identical table. Issue 5 asks for >= 0.3x.
2. JSON: M rows as one JSON array over HTTP, against SQLAlchemy Core ``insert()`` (an
   executemany of the same rows) into an identical table. Issue 5 asks for >= 1.0x.

Needs a PostgreSQL server (``TEST_POSTGRES_URL``, default postgres@127.0.0.1:5432) and psql.
Creates and drops its own database. Run: ``uv run python bench/ingest.py [--rows N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import query as query_bench  # bench/query.py: this script's folder is first on sys.path
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tablehouse.config import load_settings
from tablehouse.core import migrations
from tablehouse.datasets import ddl
from tablehouse.datasets.schemas import FieldSpec

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "primary_key": True},
    {"name": "name", "type": "string"},
    {"name": "price", "type": "float"},
    {"name": "quantity", "type": "integer"},
    {"name": "category", "type": "string"},
]
PASSWORD = "benchmark password"


def _row(n: int) -> tuple[int, str, float, int, str]:
    return (n, f"product {n}", round(n * 0.37 % 1000, 2), n % 97, f"category {n % 13}")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("id,name,price,quantity,category\n")
        for n in range(rows):
            out.write("{},{},{},{},{}\n".format(*_row(n)))


async def _admin(sql: str) -> None:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, database_url: str, folder: Path) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEHOUSE_")}
        env.update(
            DATABASE_URL=database_url,
            DATA_DIR=str(folder),
            LOG_LEVEL="WARNING",
            MAX_INGEST_BYTES=str(4 * 1024**3),
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tablehouse", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            yield chunk


def _seconds(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(rows: int, json_rows: int, folder: Path, database: str) -> dict[str, float]:
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=database)
    database_url = url.render_as_string(hide_password=False)
    migrations.upgrade(load_settings(_env_file=None, database_url=database_url, data_dir=folder))
    server = Server(database_url, folder)
    try:
        client = httpx.Client(base_url=server.url, timeout=3600)
        client.post("/api/v1/auth/register", json={"email": "b@example.com", "password": PASSWORD})
        token = client.post(
            "/api/v1/auth/login", json={"email": "b@example.com", "password": PASSWORD}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        for name in ("via_http", "via_psql", "json_http", "json_core"):
            created = client.post("/api/v1/schemas", json={"name": name, "fields": FIELDS})
            assert created.status_code == 201, created.text
        tables = {
            name: _table_name(database_url, name)
            for name in ("via_http", "via_psql", "json_http", "json_core")
        }
        csv_file = folder / "rows.csv"
        write_csv(csv_file, rows)

        def post_csv() -> None:
            response = client.post(
                "/api/v1/schemas/via_http/rows",
                content=_chunks(csv_file),
                headers={"Content-Type": "text/csv"},
            )
            assert response.status_code == 201, response.text[:500]
            assert response.json()["inserted"] == rows

        def psql_copy() -> None:
            admin = make_url(ADMIN_URL)
            subprocess.run(
                [
                    "psql",
                    "-q",
                    "-h",
                    admin.host or "127.0.0.1",
                    "-p",
                    str(admin.port or 5432),
                    "-U",
                    admin.username or "postgres",
                    "-d",
                    database,
                    "-c",
                    f"\\copy {tables['via_psql']} FROM '{csv_file}' WITH (FORMAT csv, HEADER true)",
                ],
                check=True,
                env={**os.environ, "PGPASSWORD": admin.password or ""},
            )

        records = [
            dict(zip([f["name"] for f in FIELDS], _row(n), strict=True)) for n in range(json_rows)
        ]
        body = orjson.dumps(records)

        def post_json() -> None:
            response = client.post(
                "/api/v1/schemas/json_http/rows",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 201, response.text[:500]

        def core_insert() -> None:
            asyncio.run(_core_insert(database_url, tables["json_core"], records))

        return {
            "psql \\copy (CSV)": _seconds(psql_copy),
            "Tablehouse HTTP (CSV)": _seconds(post_csv),
            "SQLAlchemy Core insert() (JSON rows)": _seconds(core_insert),
            "Tablehouse HTTP (JSON array)": _seconds(post_json),
        }
    finally:
        server.stop()


def _table_name(database_url: str, name: str) -> str:
    async def fetch() -> str:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                from sqlalchemy import text

                result = await connection.execute(
                    text("SELECT table_name FROM schemas WHERE name = :n"), {"n": name}
                )
                return str(result.scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


async def _core_insert(database_url: str, table_name: str, records: list[dict[str, Any]]) -> None:
    table = ddl.table(table_name, [FieldSpec.model_validate(f) for f in FIELDS])
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(table), records)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json-rows", type=int, default=100_000)
    arguments = parser.parse_args()
    if shutil.which("psql") is None:
        sys.exit("psql is needed for the baseline")
    database = f"th_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f"CREATE DATABASE {database}"))
    try:
        with tempfile.TemporaryDirectory() as folder:
            seconds = run(arguments.rows, arguments.json_rows, Path(folder), database)
    finally:
        # And the owner's query role it made, which outlives the database.
        asyncio.run(query_bench._drop_database(database))
    csv_rate = arguments.rows / seconds["Tablehouse HTTP (CSV)"]
    psql_rate = arguments.rows / seconds["psql \\copy (CSV)"]
    http_json_rate = arguments.json_rows / seconds["Tablehouse HTTP (JSON array)"]
    core_rate = arguments.json_rows / seconds["SQLAlchemy Core insert() (JSON rows)"]
    print(
        f"# {datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · CSV {arguments.rows:,} rows, "
        f"JSON {arguments.json_rows:,} rows, 5 columns"
    )
    print("| case | seconds | rows/s |")
    print("|---|---:|---:|")
    rows_of = {True: arguments.rows, False: arguments.json_rows}
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} | {rows_of['CSV' in name] / value:,.0f} |")
    print(f"\nCSV over HTTP vs psql \\copy: {csv_rate / psql_rate:.2f}x (target >= 0.30x)")
    print(f"JSON over HTTP vs Core insert(): {http_json_rate / core_rate:.2f}x (target >= 1.00x)")


if __name__ == "__main__":
    main()
