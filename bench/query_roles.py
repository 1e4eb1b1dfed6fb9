"""What running each query as its owner's role costs on PostgreSQL.

A point query (``SELECT * FROM t WHERE id = $1``) is opened and closed the way ``POST /query``
does it (``PostgresExecutor.open``: ``BEGIN READ ONLY; SET LOCAL ROLE ...; SET LOCAL
statement_timeout`` in one batch, the prepared statement, ``ROLLBACK``), sequentially on one
connection, so the figure is the latency of one query with nothing else in the way:

- **shared**: as the shared query role every time (what every query did before);
- **owner**: as one owner's role every time;
- **rotating**: as a different owner's role than the query before, over ``--owners`` roles.

The cases alternate in rounds (shared, owner, rotating, then again), each round after a
warm-up of its own; each case reports the median and p99 over all its rounds.

The queries run as a login that is not a superuser and is a member of every owner role, as
the application's login is. Needs a PostgreSQL server (``TEST_POSTGRES_URL``, default
postgres@127.0.0.1:5432) that lets that login in without a password (trust). Creates its own
database and roles (names starting ``thbench_``), and drops them all.

Run: ``uv run python bench/query_roles.py [--queries 3000] [--rounds 3] [--owners 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import query as query_bench  # bench/query.py: this script's folder is first on sys.path

from tablehouse.core.query_roles import owner_role
from tablehouse.query.backends.execution import Deadline, Statement
from tablehouse.query.backends.postgres import PostgresExecutor

ROWS = 10_000
# Owners per table: a table's ACL lives in its pg_class row, which has no TOAST (at about 500
# grantees PostgreSQL refuses "row is too big"). An owner's role is granted its own tables
# only, so in Tablehouse a table has two grantees; here owners share tables to keep it quick.
OWNERS_PER_TABLE = 250
SQL = "SELECT * FROM points_{table} WHERE id = $1"

Case = Callable[[int], tuple[uuid.UUID | None, int]]  # query number -> (owner, table)


async def _setup(connection: asyncpg.Connection, shared: str, owners: list[uuid.UUID]) -> str:
    """The tables, the roles, and the login that runs the queries: not a superuser (the
    documented deployment), so PostgreSQL checks its membership on every SET ROLE. The
    shared role may read every table, so every case runs the same statements."""
    login = f"{shared}_login"
    await connection.execute(
        f"CREATE ROLE {login} LOGIN; CREATE ROLE {shared} NOLOGIN NOINHERIT;"
        f"GRANT {shared} TO {login}"
    )
    for table in range(_tables(owners)):
        await connection.execute(
            f"CREATE TABLE points_{table} (id bigint PRIMARY KEY, label text);"
            f"INSERT INTO points_{table} "
            f"SELECT n, 'point ' || n FROM generate_series(1, {ROWS}) n;"
            f"GRANT SELECT ON points_{table} TO {shared}"
        )
    for number, owner in enumerate(owners):
        role = owner_role(shared, owner)
        await connection.execute(
            f"CREATE ROLE {role} NOLOGIN NOINHERIT; GRANT {role} TO {login};"
            f"GRANT SELECT ON points_{number // OWNERS_PER_TABLE} TO {role}"
        )
    return login


def _tables(owners: list[uuid.UUID]) -> int:
    return -(-len(owners) // OWNERS_PER_TABLE)


async def _drop_roles(connection: asyncpg.Connection, shared: str) -> None:
    tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE tablename ~ '^points_'")
    for row in tables:  # the grants go with them
        await connection.execute(f'DROP TABLE "{row["tablename"]}"')
    roles = await connection.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 || '%'", shared
    )
    for row in roles:
        await connection.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')


async def _latencies(
    connection: asyncpg.Connection, executor: PostgresExecutor, case: Case, queries: int
) -> list[float]:
    memo: dict[Any, Any] = {}
    timings = []
    for number in range(queries):
        owner, table = case(number)
        statement = Statement(
            sql=SQL.format(table=table),
            parameters=("id",),
            values={"id": number % ROWS + 1},
            tables={f"points_{table}": "points"},
            owner_id=owner,
        )
        started = time.perf_counter()
        cursor = await executor.open(connection, statement, Deadline(5000), memo, max_rows=2)
        rows = await cursor.fetch(2)
        await executor.close(connection, memo)
        timings.append(time.perf_counter() - started)
        assert len(rows) == 1
    return timings


async def _measure(database: str, options: argparse.Namespace) -> dict[str, list[float]]:
    shared = f"thbench_{uuid.uuid4().hex[:8]}"
    owners = [uuid.uuid4() for _ in range(max(options.owners, 2))]
    tables = _tables(owners)

    def rotating(number: int) -> tuple[uuid.UUID | None, int]:
        index = number % len(owners)
        return owners[index], index // OWNERS_PER_TABLE

    cases: dict[str, Case] = {
        "shared": lambda number: (None, number % len(owners) // OWNERS_PER_TABLE % tables),
        "owner": lambda _: (owners[0], 0),
        "rotating": rotating,
    }
    admin = await asyncpg.connect(query_bench._dsn(database))
    try:
        login = await _setup(admin, shared, owners)
        connection = await asyncpg.connect(query_bench._dsn(database), user=login)
        executor = PostgresExecutor(shared)
        results: dict[str, list[float]] = {name: [] for name in cases}
        try:
            for _ in range(options.rounds):
                for name, case in cases.items():
                    await _latencies(connection, executor, case, options.queries // 5)
                    results[name] += await _latencies(connection, executor, case, options.queries)
        finally:
            await connection.close()
        return results
    finally:
        await _drop_roles(admin, shared)
        await admin.close()


def _report(results: dict[str, list[float]], options: argparse.Namespace) -> None:
    print(
        f"{options.queries} point queries x {options.rounds} rounds per case, one connection, "
        f"{max(options.owners, 2)} owner roles"
    )
    print(f"{'case':<10} {'p50 ms':>8} {'p99 ms':>8} {'queries/s':>10}")
    for name, timings in results.items():
        ordered = sorted(timings)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        print(
            f"{name:<10} {statistics.median(ordered) * 1000:>8.3f} {p99 * 1000:>8.3f} "
            f"{len(ordered) / sum(ordered):>10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--owners", type=int, default=1000, help="roles the rotation visits")
    options = parser.parse_args()
    database = f"th_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(query_bench._admin(f"CREATE DATABASE {database}"))
    try:
        results = asyncio.run(_measure(database, options))
    finally:
        asyncio.run(query_bench._drop_database(database))
    _report(results, options)


if __name__ == "__main__":
    main()
