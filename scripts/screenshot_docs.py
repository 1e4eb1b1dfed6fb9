"""Take the README's screenshot: /docs of a fresh server on a throw-away SQLite database.

    .venv/bin/python scripts/screenshot_docs.py docs/images/api-docs.png

Needs the dev group (Playwright) and Debian's Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
TABLEHOUSE = str(Path(sys.executable).with_name("tablehouse"))


def main(output: str) -> None:
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, DATA_DIR=data, DATABASE_URL=f"sqlite+aiosqlite:///{data}/t.db")
        subprocess.run([TABLEHOUSE, "db", "init"], env=env, check=True, capture_output=True)
        server = subprocess.Popen(
            [TABLEHOUSE, "serve", "--port", str(PORT)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(f"{BASE}/docs")
                page.wait_for_selector(".opblock", timeout=30_000)
                page.screenshot(path=output)
                browser.close()
        finally:
            server.terminate()
            server.wait()


def _wait_ready(deadline_seconds: float = 120) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{BASE}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server did not get ready at {BASE}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images/api-docs.png")
