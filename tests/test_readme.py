"""The README's five-minute walkthrough, run as written: every output it shows is printed today.

The commands run in one bash process, so variables (``TOKEN=$(...)``) flow from step to step,
in a directory laid out like a checkout after ``make run``: ``./data`` is the server's data
directory (the default settings) and ``./.venv`` is this test's environment. The server is a
real ``tablehouse serve`` on a fresh SQLite database and a free port; ``127.0.0.1:8000`` in
the README means that server, in commands and in outputs. How the README marks commands,
outputs and placeholders: tests/support/readme_walkthrough.py.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.processes import process_env, running_server, tablehouse_command
from tests.support.readme_walkthrough import (
    Step,
    block_steps,
    mismatch_report,
    normalise,
    shows,
    walkthrough_steps,
)
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"
README_ADDRESS = "127.0.0.1:8000"
METRICS_TOKEN = "readme-walkthrough-metrics-token"
STEP_TIMEOUT = 120.0


class BashSession:
    """One bash process; each step's output goes to a file of its own."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._outputs = cwd / ".steps"
        self._outputs.mkdir()
        self._process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._stdin = self._process.stdin
        self._stdout = self._process.stdout
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self._stdout,), daemon=True)
        self._reader.start()
        self._count = 0

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line)

    def run(self, command: str) -> tuple[int, str]:
        self._count += 1
        output = self._outputs / f"{self._count}.out"
        # The group runs in this shell (not a subshell), so its assignments stay; stdin is not
        # the script's, or a command could read the steps that follow.
        self._stdin.write(f"{{\n{command}\n}} > '{output}' 2>&1 < /dev/null\n")
        self._stdin.write(f"echo step-done-{self._count} $?\n")
        self._stdin.flush()
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"did not finish within {STEP_TIMEOUT} s:\n{command}"
                ) from None
            if line.startswith(f"step-done-{self._count} "):
                status = int(line.split()[1])
                return status, output.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        self._stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=10)
        self._stdout.close()


def _syntax_error(command: str) -> str | None:
    checked = subprocess.run(
        ["bash", "-n"], input=command, capture_output=True, text=True, check=False
    )
    if checked.returncode == 0:
        return None
    return checked.stderr.strip()


def _settle(base_url: str, workdir: Path, command: str) -> None:
    """What a person at a terminal gets by being slower than the server.

    Query events reach the log a flush after the query ("a second or so" in the README), and
    the verification mail is written after the register response is sent.
    """
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}

    def ready() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(
            f"{base_url}/health/ready", headers=auth, timeout=10
        ).json()
        return answer

    def settled(answer: dict[str, Any]) -> bool:
        flushed = bool(answer["analytics"]["pending"] == 0)
        mailed = "data/outbox" not in command or any((workdir / "data/outbox").glob("*.eml"))
        return flushed and mailed

    last = eventually_sync(ready, settled, within=60, poll=0.05)
    assert settled(last), f"the server did not settle: {last}"


def _bash_env() -> dict[str, str]:
    # A fixed width and unbuffered output make tables and the order of stdout and stderr the
    # same on every machine; what the user's shell has set for Tablehouse is not seen (conftest).
    return {
        **os.environ,
        "COLUMNS": "80",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }


def _checkout_like(workdir: Path) -> None:
    environment = Path(sys.prefix)
    assert (environment / "bin" / "tablehouse").exists(), f"no tablehouse in {environment}"
    (workdir / ".venv").symlink_to(environment)
    server_env = process_env({})
    initialised = subprocess.run(
        tablehouse_command("db", "init"),
        cwd=workdir,
        env=server_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert initialised.returncode == 0, initialised.stderr


def test_every_walkthrough_command_prints_what_the_readme_shows(tmp_path: Path) -> None:
    steps = walkthrough_steps(README.read_text(encoding="utf-8"))
    assert len(steps) > 20, "the walkthrough was not found in README.md"
    _checkout_like(tmp_path)
    server_env = {"METRICS_TOKEN": METRICS_TOKEN, "ANALYTICS_FLUSH_INTERVAL_MS": "50"}
    failures: list[str] = []
    # A busy machine can take half a minute to start chDB.
    with running_server(server_env, tmp_path / "server.log", ready_within=120) as server:
        address = server.base_url.removeprefix("http://")
        bash = BashSession(tmp_path, _bash_env())
        try:
            for step in steps:
                command = step.command.replace(README_ADDRESS, address)
                if (error := _syntax_error(command)) is not None:
                    failures.append(f"README.md:{step.line}: not valid bash: {error}")
                    continue
                _settle(server.base_url, tmp_path, command)
                status, output = bash.run(command)
                printed = normalise(output.replace(address, README_ADDRESS))
                if status != 0 or not shows(step.expected, printed):
                    failures.append(mismatch_report(step, status, printed))
        finally:
            bash.close()
    if failures:
        # pytest.fail, not assert: the report is long and an assert would print it twice.
        report = "\n".join(failures)
        pytest.fail(f"{len(failures)} step(s) differ from README.md:\n\n{report}", pytrace=False)


README_SAMPLE = """\
TOKEN=$(echo abc)
curl -s http://127.0.0.1:8000/health \\
  -H 'X: y'
# {"status":"ok"}

echo "$TOKEN"
# abc
# ...
echo done
""".splitlines()


def test_steps_are_command_lines_with_the_comment_lines_after_them() -> None:
    steps = block_steps(README_SAMPLE, first_line=10)

    assert steps == [
        Step(
            10,
            "TOKEN=$(echo abc)\ncurl -s http://127.0.0.1:8000/health \\\n  -H 'X: y'",
            ('{"status":"ok"}',),
        ),
        Step(15, 'echo "$TOKEN"', ("abc", "...")),
        Step(18, "echo done", ()),
    ]


def test_output_shown_before_any_command_is_refused() -> None:
    with pytest.raises(ValueError, match=r"README.md:3: output shown with no command"):
        block_steps(["# orphan"], first_line=3)


@pytest.mark.parametrize(
    ("expected", "printed", "matches"),
    [
        (('{"id":"...","ok":true}',), '{"id":"0d32a746","ok":true}', True),
        (('{"id":"...","ok":true}',), '{"id":"0d32a746","ok":false}', False),
        (("a", "...", "z"), "a\nb\nc\nz", True),
        (("a", "...", "z"), "a\nz", False),  # a line of ... stands for at least one line
        (("took ... ms",), "took 0.7 ms\nand more", False),  # ... within a line stays there
        ((), "", True),
        ((), "anything", False),  # a step shown without output must print nothing
        (("a.b",), "axb", False),  # everything but ... is literal
    ],
)
def test_placeholders_stand_for_varying_text_only(
    expected: tuple[str, ...], printed: str, matches: bool
) -> None:
    assert shows(expected, printed) is matches


def test_printed_output_is_compared_without_carriage_returns_and_trailing_blanks() -> None:
    assert normalise("x-request-id: w-1\r\n  \n") == "x-request-id: w-1"
    assert normalise("a  \nb\n\n") == "a\nb"
