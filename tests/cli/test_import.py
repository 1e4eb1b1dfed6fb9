"""``tablehouse import``: streaming a file into a dataset in committed batches (real processes)."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import initialised_database, run_tablehouse

pytestmark = pytest.mark.slow

OWNER = "o@example.com"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = initialised_database(tmp_path, owner=OWNER)
    definition = tmp_path / "items.json"
    definition.write_text(
        json.dumps(
            {
                "name": "items",
                "fields": [
                    {"name": "id", "type": "integer", "primary_key": True},
                    {"name": "name", "type": "string"},
                    {"name": "price", "type": "float"},
                ],
            }
        )
    )
    made = run_tablehouse("schemas", "create", "--file", str(definition), "--owner", OWNER, env=env)
    assert made.returncode == 0, made.stderr
    return env


def import_file(env: dict[str, str], path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run_tablehouse("import", "items", str(path), "--owner", OWNER, *options, env=env)


def row_count(env: dict[str, str]) -> int:
    shown = run_tablehouse("schemas", "show", "items", "--owner", OWNER, env=env)
    assert shown.returncode == 0, shown.stderr
    return int(json.loads(shown.stdout)["row_count"])


def stored_ids(env: dict[str, str]) -> list[int]:
    database = env["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as connection:
        (table,) = connection.execute(
            "SELECT table_name FROM schemas WHERE name = 'items'"
        ).fetchone()
        return [row[0] for row in connection.execute(f'SELECT id FROM "{table}" ORDER BY id')]


def write_csv(path: Path, ids: range | list[int], *, bad: frozenset[int] = frozenset()) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["id", "name", "price"])
        for i in ids:
            out.writerow([i, f"item {i}\nsecond line" if i % 7 == 0 else f"item {i}", i / 4])
            if i in bad:
                out.writerow([f"x{i}", "broken", "not a number"])
    return path


def test_csv_in_batches(env: dict[str, str], tmp_path: Path) -> None:
    source = write_csv(tmp_path / "items.csv", range(1, 3001))
    result = import_file(env, source, "--batch-size", "500")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("imported 3,000 rows into items in ")
    assert result.stdout.strip().endswith("; 0 rejected")
    assert row_count(env) == 3000
    assert stored_ids(env) == list(range(1, 3001))
    assert not (tmp_path / "items.csv.import-state.json").exists()
    assert not (tmp_path / "items.csv.rejected.ndjson").exists()


def test_ndjson(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "items.data"
    lines = [json.dumps({"id": i, "name": f"item {i}", "price": i * 1.5}) for i in range(1, 1201)]
    source.write_text("\n".join(lines[:600]) + "\n\n  \n" + "\n".join(lines[600:]) + "\n")
    unknown = import_file(env, source)
    assert unknown.returncode == 2
    assert "pass --format csv or ndjson" in unknown.stderr
    result = import_file(env, source, "--format", "ndjson", "--batch-size", "250")
    assert result.returncode == 0, result.stderr
    assert "imported 1,200 rows into items" in result.stdout
    assert row_count(env) == 1200


def test_invalid_rows_are_reported_and_skipped(env: dict[str, str], tmp_path: Path) -> None:
    source = write_csv(tmp_path / "items.csv", range(1, 1001), bad=frozenset({10, 500, 900}))
    result = import_file(env, source, "--batch-size", "100")
    assert result.returncode == 1
    assert row_count(env) == 1000
    assert "imported 1,000 rows into items" in result.stdout
    assert "; 3 rejected" in result.stdout
    assert "row 11, field id: expected an integer, got 'x10'" in result.stdout
    assert "3 rows rejected (not imported): see" in result.stderr.strip().splitlines()[-1]
    rejected_file = (tmp_path / "items.csv.rejected.ndjson").read_text()
    rejects = [json.loads(line) for line in rejected_file.splitlines()]
    assert {r["row"] for r in rejects} == {11, 502, 903}
    assert {r["field"] for r in rejects} == {"id", "price"}
    first = next(r for r in rejects if r["row"] == 11 and r["field"] == "id")
    assert first["data"] == {"id": "x10", "name": "broken", "price": "not a number"}
    assert not (tmp_path / "items.csv.import-state.json").exists()
    assert "Traceback" not in result.stderr


def test_resume_after_a_duplicate_key(env: dict[str, str], tmp_path: Path) -> None:
    blocker = write_csv(tmp_path / "blocker.csv", [1234])
    assert import_file(env, blocker).returncode == 0
    # Bad rows after ids 20 and 1210 (rows 21 and 1212); id 1234 (row 1235) is taken already.
    source = write_csv(tmp_path / "items.csv", range(1, 2001), bad=frozenset({20, 1210}))
    state = tmp_path / "items.csv.import-state.json"

    stopped = import_file(env, source, "--batch-size", "300")
    assert stopped.returncode == 1
    assert "Traceback" not in stopped.stderr
    assert "1234" in stopped.stderr
    assert "--resume" in stopped.stderr
    saved = json.loads(state.read_text())
    assert saved["dataset"] == "items"
    assert saved["owner"] == OWNER
    assert saved["rows_committed"] == 1200
    assert saved["rows_rejected"] == 1
    assert stored_ids(env) == [*range(1, 1201), 1234]

    again = import_file(env, source, "--batch-size", "300")
    assert again.returncode == 1
    assert "add --resume to continue it, or delete" in again.stderr
    other = write_csv(tmp_path / "other.csv", [1])
    state.with_name("other.csv.import-state.json").write_text(state.read_text())
    refused = import_file(env, other, "--resume")
    assert refused.returncode == 1
    assert "belongs to another import" in refused.stderr

    resumed = import_file(env, source, "--resume", "--on-conflict", "skip", "--batch-size", "500")
    assert resumed.returncode == 1  # the invalid rows, still reported
    assert "imported 1,999 rows into items" in resumed.stdout
    assert "; 2 rejected; 1 row not written (duplicate keys)" in resumed.stdout
    assert stored_ids(env) == list(range(1, 2001))
    assert not state.exists()
    rejects = (tmp_path / "items.csv.rejected.ndjson").read_text().splitlines()
    # id and price of each bad row, once each: row 1212 was read by both runs
    assert [json.loads(line)["row"] for line in rejects] == [21, 21, 1212, 1212]
    nothing = import_file(env, source, "--resume")
    assert nothing.returncode == 1
    assert "nothing to resume" in nothing.stderr


def test_unknown_dataset_owner_and_header(env: dict[str, str], tmp_path: Path) -> None:
    source = write_csv(tmp_path / "items.csv", range(1, 5))
    missing = run_tablehouse("import", "nope", str(source), "--owner", OWNER, env=env)
    assert missing.returncode == 1
    assert "no dataset named 'nope'" in missing.stderr
    nobody = run_tablehouse("import", "items", str(source), "--owner", "x@example.com", env=env)
    assert nobody.returncode == 1
    assert "no user with email x@example.com" in nobody.stderr
    odd = tmp_path / "odd.csv"
    odd.write_text("id,name,colour\n1,a,red\n")
    header = import_file(env, odd)
    assert header.returncode == 1
    assert "unknown fields in the header: colour" in header.stderr
    twice = tmp_path / "twice.csv"
    twice.write_text("id,name,name\n1,a,b\n")
    repeated = import_file(env, twice)
    assert repeated.returncode == 1
    assert "the header names 'name' more than once" in repeated.stderr
    assert "Traceback" not in missing.stderr + nobody.stderr + header.stderr + repeated.stderr
    assert row_count(env) == 0
