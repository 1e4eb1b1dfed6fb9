"""Versioned ClickHouse DDL for the analytics tables (``tablehouse db init`` and
``tablehouse analytics migrate``).

Each ``ddl/NNNN_name.sql`` is one migration; a statement ends at a line ending in ``;``.
Every statement is idempotent (``IF NOT EXISTS``), so a migration interrupted halfway is
simply run again; applied versions are recorded in ``schema_migrations``.

TTLs are rendered into the DDL when a table is created: a later change of the setting needs
``ALTER TABLE ... MODIFY TTL``, which ``apply_ttl`` runs (only where the TTL differs, as it
rewrites the table's parts).

With a cluster name, every statement runs ``ON CLUSTER`` and tables use ReplicatedMergeTree
(Keeper paths from the standard ``{shard}``/``{replica}`` macros). ``schema_migrations`` is
then replicated within a shard; each shard records its own migrations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from string import Template

from tablehouse.analytics.store.client import AnalyticsStore, quote

MIGRATIONS_TABLE = "schema_migrations"
# How many recent insert tokens a table remembers: a resent batch older than this many
# inserts would be counted again. Batches are resent within minutes, far inside this window.
DEDUP_WINDOW = 10_000
REPLICATED_ENGINE = (
    "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
)
TTL_TABLES = {"query_logs": "query_log_ttl_days", "metrics": "metrics_ttl_days"}
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_TTL_DAYS = re.compile(r"\bTTL toDateTime\(timestamp\) \+ toIntervalDay\((\d+)\)")

_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS ${database}.schema_migrations${on_cluster}
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ${engine}
ORDER BY version
SETTINGS ${dedup_window};
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def migrations(
    *, query_log_ttl_days: int, metrics_ttl_days: int, cluster: str | None, database: str
) -> list[Migration]:
    """Every migration shipped in ``ddl/``, in version order, rendered for this target."""
    values = _values(
        database, cluster, query_log_ttl_days=query_log_ttl_days, metrics_ttl_days=metrics_ttl_days
    )
    found: dict[int, Migration] = {}
    for item in resources.files("tablehouse.analytics.store").joinpath("ddl").iterdir():
        match = _FILE.match(item.name)
        if match is None:
            continue
        version = int(match[1])
        if version in found:
            raise ValueError(f"two analytics migrations have version {version}")
        statements = _statements(item.read_text(encoding="utf-8"), values)
        found[version] = Migration(version, match[2], statements)
    return [found[version] for version in sorted(found)]


def bootstrap_statements(*, cluster: str | None, database: str) -> tuple[str, ...]:
    """The DDL of the table recording applied migrations, run before any migration."""
    return _statements(_MIGRATIONS_DDL, _values(database, cluster))


async def migrate(
    store: AnalyticsStore, *, query_log_ttl_days: int = 90, metrics_ttl_days: int = 365
) -> list[str]:
    """Apply pending migrations in order; the names applied (none on a second run)."""
    target = store.target
    pending = migrations(
        query_log_ttl_days=query_log_ttl_days,
        metrics_ttl_days=metrics_ttl_days,
        cluster=target.cluster,
        database=target.database,
    )
    for statement in bootstrap_statements(cluster=target.cluster, database=target.database):
        await store.command(statement)
    applied = await _applied(store)
    names = []
    for migration in pending:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            await store.command(statement)
        # The token makes a duplicate record (two concurrent runs) count once.
        await store.insert(
            MIGRATIONS_TABLE,
            ("version", "name", "applied_at"),
            [(migration.version, migration.name, datetime.now(UTC))],
            dedup_token=f"migration-{migration.version}",
        )
        names.append(migration.name)
    return names


async def status(store: AnalyticsStore) -> list[tuple[int, str, datetime | None]]:
    """Every known migration with when it was applied (``None``: pending)."""
    target = store.target
    known = migrations(
        query_log_ttl_days=90,
        metrics_ttl_days=365,
        cluster=target.cluster,
        database=target.database,
    )
    rows = await store.query(
        "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": target.database, "t": MIGRATIONS_TABLE},
    )
    applied = await _applied(store) if rows[0]["n"] else {}
    return [(m.version, m.name, applied.get(m.version)) for m in known]


async def apply_ttl(
    store: AnalyticsStore, *, query_log_ttl_days: int, metrics_ttl_days: int
) -> list[str]:
    """Set the tables' TTLs to these days where they differ; the tables changed.

    ClickHouse then removes newly expired rows in the background (``materialize_ttl_after_
    modify``), or at the next ``OPTIMIZE ... FINAL``. Tables not created yet are skipped:
    ``migrate`` creates them with the TTL it is given.
    """
    days = {"query_log_ttl_days": query_log_ttl_days, "metrics_ttl_days": metrics_ttl_days}
    for value in days.values():
        _check_days(value)
    target = store.target
    rows = await store.query(
        "SELECT name, engine_full FROM system.tables"
        " WHERE database = {db:String} AND name IN {names:Array(String)} ORDER BY name",
        {"db": target.database, "names": list(TTL_TABLES)},
    )
    on_cluster = _values(target.database, target.cluster)["on_cluster"]
    changed = []
    for row in rows:
        wanted = days[TTL_TABLES[row["name"]]]
        current = _TTL_DAYS.search(row["engine_full"])
        if current is not None and int(current[1]) == wanted:
            continue
        await store.command(
            f"ALTER TABLE {quote(target.database)}.{row['name']}{on_cluster}"
            f" MODIFY TTL toDateTime(timestamp) + INTERVAL {wanted} DAY"
        )
        changed.append(row["name"])
    return changed


async def _applied(store: AnalyticsStore) -> dict[int, datetime]:
    rows = await store.query(
        f"SELECT version, min(applied_at) AS applied_at FROM {quote(store.target.database)}"
        f".{MIGRATIONS_TABLE} GROUP BY version"
    )
    return {int(row["version"]): row["applied_at"] for row in rows}


def _values(
    database: str, cluster: str | None, *, query_log_ttl_days: int = 90, metrics_ttl_days: int = 365
) -> dict[str, str]:
    _check_days(query_log_ttl_days)
    _check_days(metrics_ttl_days)
    window = "replicated_deduplication_window" if cluster else "non_replicated_deduplication_window"
    return {
        "database": quote(database),
        "on_cluster": f" ON CLUSTER {quote(cluster)}" if cluster else "",
        "engine": REPLICATED_ENGINE if cluster else "MergeTree",
        "dedup_window": f"{window} = {DEDUP_WINDOW}",
        "query_log_ttl_days": str(query_log_ttl_days),
        "metrics_ttl_days": str(metrics_ttl_days),
    }


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"a TTL must be a whole number of days, at least 1; got {days!r}")


def _statements(text: str, values: dict[str, str]) -> tuple[str, ...]:
    """Split a DDL file into statements (each ends on a line ending in ';') and render them.

    Whole-line ``--`` comments are dropped first, so they may mention anything."""
    statements, lines = [], []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("--"):
            continue
        lines.append(line.rstrip())
        if lines[-1].endswith(";"):
            statements.append(Template("\n".join(lines)[:-1]).substitute(values))
            lines = []
    if lines:
        raise ValueError(f"DDL ends without ';': {lines[0]!r}")
    return tuple(statements)
