"""How the CLI looks in an 80-column terminal: help that reads whole, flags written as flags,
stderr kept for what the user needs, and an import progress bar on one line."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

from tablehouse.cli import app
from tests.support.processes import (
    initialised_database,
    process_env,
    run_tablehouse,
    tablehouse_command,
)

pytestmark = pytest.mark.slow

OWNER = "o@example.com"
WIDTH = 80
# Terminal control sequences: colours, cursor moves, line clears.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under ``command`` (typer's own copy of click's classes)."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(command_paths(sub, (*path, name)))
    return paths


COMMANDS = command_paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "tablehouse" for p in COMMANDS])
def test_help_fits_80_columns_and_writes_flags_as_flags(path: tuple[str, ...]) -> None:
    shown = run_tablehouse(*path, "--help", env={"COLUMNS": str(WIDTH)})

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, shown.stdout
    assert "<bool>" not in shown.stdout
    # An option's value is named (EMAIL, N, [table|csv]), not typed (<str>, <int range>).
    options = [line for line in lines if line.lstrip().startswith("-")]
    assert not [line for line in options if re.search(r"<[a-z][^>]*>", line)], shown.stdout
    # Options read --flag or --flag / --no-flag, and each command is listed on one line.
    assert not any(line.startswith("│") for line in lines), shown.stdout
    listed = lines[lines.index("Commands:") + 1 :] if "Commands:" in lines else []
    assert all(re.match(r"  \S+ +\S", line) for line in listed if line), shown.stdout


@pytest.mark.parametrize(
    "group", [(), ("db",), ("users",), ("schemas",), ("queries",), ("analytics",)]
)
def test_command_lists_show_each_summary_whole(group: tuple[str, ...]) -> None:
    shown = run_tablehouse(*group, "--help", env={"COLUMNS": str(WIDTH)})

    listed = shown.stdout.split("Commands:\n", 1)[1].splitlines()
    assert listed
    # click cuts a first sentence too long for the terminal with "..."
    assert not [line for line in listed if line.rstrip().endswith("...")], shown.stdout


def test_flags_are_plain_flags_or_pairs(tmp_path: Path) -> None:
    shown = run_tablehouse("serve", "--help", env={"COLUMNS": str(WIDTH)})
    assert "--reload / --no-reload" in shown.stdout
    assert "[default: HOST]" in shown.stdout  # not swallowed as markup
    shown = run_tablehouse("import", "--help", env={"COLUMNS": str(WIDTH)})
    assert re.search(r"^  --resume +Continue a stopped import$", shown.stdout, re.MULTILINE)


def test_commands_that_succeed_write_nothing_to_stderr(tmp_path: Path) -> None:
    env = initialised_database(tmp_path, owner=OWNER)  # db init and users create
    definition = tmp_path / "items.json"
    definition.write_text(
        '{"name": "items", "fields": [{"name": "id", "type": "integer", "primary_key": true}]}'
    )
    (tmp_path / "items.csv").write_text("id\n1\n2\n")
    runs = [
        run_tablehouse("db", "init", env=env),
        run_tablehouse("users", "list", env=env),
        run_tablehouse("schemas", "create", "--file", str(definition), "--owner", OWNER, env=env),
        run_tablehouse("schemas", "list", "--owner", OWNER, env=env),
        run_tablehouse("import", "items", str(tmp_path / "items.csv"), "--owner", OWNER, env=env),
        run_tablehouse("db", "current", env=env),
    ]

    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stderr == "", run.args
        assert run.stdout


def test_log_level_debug_still_shows_every_line(tmp_path: Path) -> None:
    env = initialised_database(tmp_path, owner=OWNER)

    debug = run_tablehouse("users", "list", env={**env, "LOG_LEVEL": "DEBUG"})

    assert debug.returncode == 0, debug.stderr
    assert "Pool disposed" in debug.stderr


def test_upgrade_and_downgrade_name_each_migration_they_run(tmp_path: Path) -> None:
    env = initialised_database(tmp_path, owner=OWNER)

    down = run_tablehouse("db", "downgrade", "-1", env=env)
    up = run_tablehouse("db", "upgrade", env=env)

    assert down.returncode == 0, down.stderr
    assert up.returncode == 0, up.stderr
    assert re.fullmatch(r"Running downgrade \S+ -> \S+\n", down.stdout), down.stdout
    assert re.fullmatch(r"Running upgrade \S+ -> \S+\n", up.stdout), up.stdout
    assert down.stderr == up.stderr == ""


def run_in_terminal(*args: str, env: dict[str, str], columns: int) -> tuple[int, str]:
    """The command on a pseudo-terminal ``columns`` wide, and all it wrote there."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        tablehouse_command(*args),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=process_env({**env, "COLUMNS": str(columns), "LINES": "24"}),
    )
    os.close(terminal)
    written = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        written.append(chunk)
    os.close(controller)
    return process.wait(timeout=60), b"".join(written).decode(errors="replace")


def test_import_progress_bar_stays_on_one_line_at_80_columns(tmp_path: Path) -> None:
    env = initialised_database(tmp_path, owner=OWNER)
    definition = tmp_path / "items.json"
    definition.write_text(
        '{"name": "items", "fields": [{"name": "id", "type": "integer", "primary_key": true},'
        ' {"name": "name", "type": "string"}]}'
    )
    made = run_tablehouse("schemas", "create", "--file", str(definition), "--owner", OWNER, env=env)
    assert made.returncode == 0, made.stderr
    source = tmp_path / "a_file_with_a_rather_long_name_of_items.csv"
    source.write_text("id,name\n" + "".join(f"{i},item {i}\n" for i in range(1, 20_001)))

    code, written = run_in_terminal(
        "import", "items", str(source), "--owner", OWNER, env=env, columns=WIDTH
    )

    assert code == 0, written
    segments = [s for s in re.split(r"[\r\n]", _CONTROL.sub("", written)) if s.strip()]
    frames = [s for s in segments if "/s" in s and not s.startswith("imported")]
    assert frames, written
    for frame in frames:  # the name, the bar and every figure on one line that fits
        assert len(frame) <= WIDTH, frame
        assert frame.startswith("a_file_with"), frame
        assert re.search(r"[\d.]+/[\d.]+ [kMG]?B .*rows, [\d,-]+/s", frame), frame
    assert segments[-1].startswith("imported 20,000 rows into items")


def test_query_names_columns_and_writes_date_times_as_the_api_does(tmp_path: Path) -> None:
    env = initialised_database(tmp_path, owner=OWNER)
    definition = tmp_path / "events.json"
    definition.write_text(
        '{"name": "events", "fields": [{"name": "id", "type": "integer", "primary_key": true},'
        ' {"name": "at", "type": "datetime"}]}'
    )
    made = run_tablehouse("schemas", "create", "--file", str(definition), "--owner", OWNER, env=env)
    assert made.returncode == 0, made.stderr
    source = tmp_path / "events.csv"
    source.write_text("id,at\n1,2026-01-01T00:00:37Z\n2,2026-01-02T10:00:00+02:00\n")
    loaded = run_tablehouse("import", "events", str(source), "--owner", OWNER, env=env)
    assert loaded.returncode == 0, loaded.stderr

    answered = run_tablehouse(
        "query",
        "SELECT count(*), max(at), min(at) AS first FROM events",
        "--as",
        OWNER,
        "--format",
        "csv",
        env=env,
    )

    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.splitlines() == [
        "count(*),max(at),first",
        "2,2026-01-02T08:00:00+00:00,2026-01-01T00:00:37+00:00",
    ]
