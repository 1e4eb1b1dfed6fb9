"""``tablehouse db init`` and ``tablehouse analytics``: the embedded store from the command
line (real processes, each with a chDB data path of its own)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tablehouse.analytics.pipeline.writer import EventWriter, WriterSettings
from tablehouse.query.events import QueryExecuted
from tests.support.processes import run_tablehouse

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "DATA_DIR": str(tmp_path),
    }


def test_db_init_creates_the_analytics_tables_once(env: dict[str, str]) -> None:
    first = run_tablehouse("db", "init", env=env)
    again = run_tablehouse("db", "init", env=env)
    status = run_tablehouse("analytics", "status", env=env)

    assert first.returncode == 0, first.stderr
    assert "analytics tables created: query_logs, metrics" in first.stdout
    assert "analytics tables up to date" in again.stdout
    assert status.returncode == 0, status.stderr
    assert "0001 query_logs: 20" in status.stdout
    assert "0 segment file(s) waiting" in status.stdout


class _Away:
    async def insert(self, *args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("store away (test)")


async def _leave_in_spool(spool: Path, events: int) -> None:
    """What a server stopped while its store was away leaves behind."""
    writer = EventWriter(_Away(), WriterSettings(spool_dir=spool, flush_interval=0.01))
    await writer.start()
    for n in range(events):
        writer.emit(
            QueryExecuted(
                query_id=uuid.uuid4(),
                user_id=uuid.uuid4(),
                query_text=f"SELECT {n}",
                status="ok",
                error=None,
                execution_time_ms=1.0,
                rows_read=1,
                bytes_read=3,
                timestamp=datetime.now(UTC),
            )
        )
    await writer.stop()
    assert writer.counts().spooled == events


def test_replay_writes_what_the_spool_holds(env: dict[str, str], tmp_path: Path) -> None:
    assert run_tablehouse("db", "init", env=env).returncode == 0
    asyncio.run(_leave_in_spool(tmp_path / "analytics-spool", 25))

    waiting = run_tablehouse("analytics", "status", env=env)
    replayed = run_tablehouse("analytics", "replay", env=env)
    after = run_tablehouse("analytics", "status", env=env)

    assert "1 segment file(s) waiting" in waiting.stdout
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 25 event(s); 0 still waiting" in replayed.stdout
    assert "0 segment file(s) waiting" in after.stdout


def test_unreachable_server_store_is_one_line_and_does_not_stop_db_init(
    env: dict[str, str],
) -> None:
    """``analytics migrate`` fails; ``db init`` readies the database and warns, because the
    server creates the tables itself when the store answers (a container must start)."""
    closed = {**env, "ANALYTICS_URL": "http://127.0.0.1:1/tablehouse"}

    migrate = run_tablehouse("analytics", "migrate", env=closed)
    init = run_tablehouse("db", "init", env=closed)

    assert migrate.returncode == 1
    assert "the analytics store did not answer (http://127.0.0.1:1" in migrate.stderr
    assert init.returncode == 0, init.stderr
    assert "database ready at revision" in init.stdout
    # stderr also holds the migration log lines; the warning is one plain line of its own.
    warnings = [line for line in init.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: the analytics store did not answer")
    assert "ANALYTICS_ENABLED=false" in warnings[0]
    assert "Traceback" not in migrate.stderr + init.stderr
