"""How fast does ``tablehouse`` start, and how fast does it refuse a bad configuration?

Measures, as medians over several runs on this machine:
  - baseline:    a bare ``python -c pass`` (the interpreter's own start-up);
  - bad setting: ``tablehouse serve`` with DB_POOL_SIZE=-1 until it exits (issue 2: < 2 s);
  - serving:     ``tablehouse serve`` on a fresh SQLite database until /health answers 200.

Figures are printed as seconds and as ratios to the baseline, because machines are noisy.
Run: ``uv run python bench/startup.py [--runs N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

TABLEHOUSE = [sys.executable, "-m", "tablehouse"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEHOUSE_")}
    env.pop("DATABASE_URL", None)
    env.update(LOG_FORMAT="json", **extra)
    return env


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def baseline() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def bad_setting() -> None:
    result = subprocess.run(
        [*TABLEHOUSE, "serve"], env=_env(DB_POOL_SIZE="-1"), capture_output=True, check=False
    )
    assert result.returncode == 2, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serving() -> None:
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        env = _env(DATABASE_URL=f"sqlite:///{Path(folder) / 'b.db'}", DATA_DIR=folder)
        process = subprocess.Popen(
            [*TABLEHOUSE, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                        return
                except OSError:
                    if process.poll() is not None:
                        raise RuntimeError("server exited") from None
                    time.sleep(0.02)
        finally:
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    cases = {"baseline": baseline, "bad setting": bad_setting, "serving": serving}
    for case in cases.values():  # warm the page cache and bytecode once
        case()
    medians = {
        name: statistics.median(_timed(case) for _ in range(runs)) for name, case in cases.items()
    }
    print(
        f"# {datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {runs} runs, medians"
    )
    print("| case | seconds | ratio to baseline |")
    print("|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.3f} | {seconds / medians['baseline']:.1f} |")


if __name__ == "__main__":
    main()
