"""``tablehouse serve`` refuses what cannot work before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_tablehouse

pytestmark = pytest.mark.slow


def test_several_workers_need_a_clickhouse_server(tmp_path: Path) -> None:
    result = run_tablehouse("serve", "--workers", "2", env={"DATA_DIR": str(tmp_path)})

    assert result.returncode == 2
    assert "--workers 2 needs a ClickHouse server" in result.stderr
    assert "Traceback" not in result.stderr
