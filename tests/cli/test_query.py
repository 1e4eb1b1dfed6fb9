"""``tablehouse query``: SQL as a user from the command line (real processes, SQLite)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.support.processes import initialised_database, run_tablehouse

# One worker runs the module: its database is made once (module scope), not once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli_query")]
OWNER = "o@example.com"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One database for the module: queries only read it."""
    tmp_path = tmp_path_factory.mktemp("cli-query")
    env = initialised_database(tmp_path, owner=OWNER)
    definition = tmp_path / "cities.json"
    definition.write_text(
        json.dumps(
            {
                "name": "cities",
                "fields": [
                    {"name": "name", "type": "string", "primary_key": True},
                    {"name": "people", "type": "integer"},
                ],
            }
        )
    )
    made = run_tablehouse("schemas", "create", "--file", str(definition), "--owner", OWNER, env=env)
    assert made.returncode == 0, made.stderr
    rows = tmp_path / "cities.csv"
    rows.write_text("name,people\nOslo,700000\nBergen,290000\n[red]Tromsø,77000\n")
    loaded = run_tablehouse("import", "cities", str(rows), "--owner", OWNER, env=env)
    assert loaded.returncode == 0, loaded.stderr
    return env


def test_prints_a_table_with_values_as_they_are(env: dict[str, str]) -> None:
    result = run_tablehouse(
        "query", "SELECT name, people FROM cities ORDER BY people DESC", "--as", OWNER, env=env
    )

    assert result.returncode == 0, result.stderr
    assert "Oslo" in result.stdout
    assert "700000" in result.stdout
    assert "[red]Tromsø" in result.stdout  # data, not rich markup
    assert "3 row(s)" in result.stderr


def test_csv_and_json_formats_with_parameters(env: dict[str, str]) -> None:
    sql = "SELECT name FROM cities WHERE people > :least ORDER BY name"
    as_csv = run_tablehouse(
        "query", sql, "--as", OWNER, "--format", "csv", "--param", "least=100000", env=env
    )
    as_json = run_tablehouse(
        "query", sql, "--as", OWNER, "--format", "json", "-p", "least=100000", env=env
    )

    assert as_csv.returncode == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["name"], ["Bergen"], ["Oslo"]]
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["rows"] == [["Bergen"], ["Oslo"]]
    assert document["columns"] == [{"name": "name", "type": "string"}]


def test_ndjson_is_one_object_per_row_keyed_by_column(env: dict[str, str]) -> None:
    result = run_tablehouse(
        "query",
        "SELECT name, people FROM cities ORDER BY people DESC",
        "--as",
        OWNER,
        "--format",
        "ndjson",
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"name": "Oslo", "people": 700000},
        {"name": "Bergen", "people": 290000},
        {"name": "[red]Tromsø", "people": 77000},
    ]


def test_stderr_holds_one_line_of_figures_not_the_query_event(env: dict[str, str]) -> None:
    table = run_tablehouse("query", "SELECT name FROM cities", "--as", OWNER, env=env)
    as_csv = run_tablehouse(
        "query", "SELECT name FROM cities", "--as", OWNER, "--format", "csv", env=env
    )

    assert table.returncode == as_csv.returncode == 0, table.stderr + as_csv.stderr
    for result in (table, as_csv):
        assert "query.executed" not in result.stderr
        assert "query_text" not in result.stdout + result.stderr
    assert re.fullmatch(r"3 row\(s\) in [0-9.]+ ms", _plain_lines(table.stderr)[0])
    assert _plain_lines(table.stderr)[1:] == []
    assert _plain_lines(as_csv.stderr) == []  # the answer is on stdout, nothing to add


def _plain_lines(stderr: str) -> list[str]:
    """What the command printed for its user: stderr without the JSON log records."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def test_limit_says_the_answer_was_cut(env: dict[str, str]) -> None:
    result = run_tablehouse(
        "query",
        "SELECT name FROM cities",
        "--as",
        OWNER,
        "--format",
        "csv",
        "--limit",
        "1",
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "truncated" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("DELETE FROM cities", "--as", OWNER), "not_read_only"),
        (("SELECT * FROM users", "--as", OWNER), "no dataset named 'users'"),
        (("SELECT 1", "--as", "nobody@example.com"), "no active user with email"),
        (("SELECT 1", "--as", OWNER, "--format", "xml"), "expected table, csv, json or ndjson"),
        (("SELECT :x", "--as", OWNER, "--param", "x"), "expected name=value"),
        (("SELECT 1", "--as", OWNER, "--timeout-ms", "999999999"), "QUERY_TIMEOUT_MS"),
    ],
)
def test_refusals_are_one_line_and_exit_1(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    result = run_tablehouse("query", *args, env=env)

    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr
