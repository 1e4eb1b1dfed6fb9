"""Real server processes for tests whose behaviour is about the process or HTTP itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.waiting import wait_until_sync


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Password hashing a test server can afford: tests sign in often, and argon2id's defaults
# cost tens of milliseconds of CPU each time.
CHEAP_PASSWORDS = {
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "PASSWORD_HASH_PARALLELISM": "1",
}


def tablehouse_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tablehouse", *args]


def process_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """The test's environment (already free of settings, see conftest) plus ``overrides``."""
    return {**os.environ, "LOG_FORMAT": "json", **overrides}


def _empty_directory() -> str:
    """A working directory with no .env file in it, for processes that read one."""
    return tempfile.mkdtemp(prefix="tablehouse-cwd-")


def run_tablehouse(
    *args: str, env: Mapping[str, str], timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tablehouse_command(*args),
        env=process_env(env),
        cwd=_empty_directory(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def initialised_database(folder: Path, *, owner: str) -> dict[str, str]:
    """Settings for a fresh, migrated SQLite file in ``folder`` with one user, ``owner``."""
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'cli.db'}",
        "DATA_DIR": str(folder),
        # Each command would start chDB for nothing; tests/cli/test_analytics.py covers it.
        "ANALYTICS_ENABLED": "false",
    }
    assert run_tablehouse("db", "init", env=env).returncode == 0
    created = run_tablehouse(
        "users",
        "create",
        "--email",
        owner,
        "--password-stdin",
        env=env,
        stdin="long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running_server(
    env: Mapping[str, str], log_path: Path, *, ready_within: float = 120
) -> Iterator[Server]:
    """``tablehouse serve`` on a free port; output goes to ``log_path`` (a pipe could fill up).
    ``ready_within`` is a ceiling, not an expectation (it starts in about a second): a machine
    running the suite on every core, or running other work beside it, may take far longer."""
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            tablehouse_command("serve", "--port", str(port)),
            env=process_env(env),
            cwd=log_path.parent,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_until_serving(server, ready_within)
        yield server
    finally:
        server.stop()


def _wait_until_serving(server: Server, within: float) -> None:
    def answers() -> bool:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise AssertionError(f"server exited with {code}:\n{server.output()}")
        try:
            httpx.get(f"{server.base_url}/health", timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_until_sync(answers, within=within, what="the server answers", poll=0.05)
