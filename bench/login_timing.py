"""Does a login answer reveal whether the account exists? Compare answer times.

Logs in through the real app (in-process HTTP, SQLite, production argon2id parameters):
  - baseline: the right password;
  - wrong password for an existing account;
  - an email that has no account.
Prints the median of each and its ratio to the baseline. Unknown email and wrong password
should take about as long (both verify one argon2id hash). Throttling limits are raised so
that it does not interfere. Run: ``uv run python bench/login_timing.py [--runs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tablehouse.app import create_app
from tablehouse.config import load_settings
from tablehouse.core import migrations
from tablehouse.core.logging import configure_logging

PASSWORD = "correct horse battery"


async def _median_ms(client: httpx.AsyncClient, bodies: list[dict[str, str]]) -> float:
    times = []
    for body in bodies:
        started = time.perf_counter()
        await client.post("/api/v1/auth/login", json=body)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(runs: int, folder: Path) -> dict[str, float]:
    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite:///{folder / 'bench.db'}",
        data_dir=folder,
        login_max_failures_per_account=10_000,
        login_max_failures_per_address=10_000,
        log_level="WARNING",
    )
    configure_logging(settings)
    await asyncio.to_thread(migrations.upgrade, settings)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
    ):
        body = {"email": "bench@example.com", "password": PASSWORD}
        await client.post("/api/v1/auth/register", json=body)
        wrong = {"email": "bench@example.com", "password": "wrong password"}
        return {
            "right password (baseline)": await _median_ms(client, [body] * runs),
            "wrong password": await _median_ms(client, [wrong] * runs),
            "unknown email": await _median_ms(
                client,
                [{"email": f"nobody{n}@example.com", "password": PASSWORD} for n in range(runs)],
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        medians = asyncio.run(run(runs, Path(folder)))
    baseline = medians["right password (baseline)"]
    print(
        f"# {datetime.now(UTC):%Y-%m-%d} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {runs} logins each, medians"
    )
    print("| case | ms | ratio to baseline |")
    print("|---|---:|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.1f} | {value / baseline:.2f} |")


if __name__ == "__main__":
    main()
