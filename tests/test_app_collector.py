"""The garbage collector as a started app leaves it: tuned once per process for serving."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.databases import copy_sqlite

_START_AND_REPORT = """
import asyncio, gc, sys
from pathlib import Path
from tablehouse.app import YOUNG_COLLECTION_THRESHOLD, create_app
from tests.support.databases import settings_for

async def main():
    before = gc.get_threshold()
    for _ in range(2):  # a second app in the process changes nothing more
        app = create_app(settings_for(sys.argv[1], Path(sys.argv[2])))
        async with app.router.lifespan_context(app):
            pass
    after = gc.get_threshold()
    young_raised = after[0] == YOUNG_COLLECTION_THRESHOLD
    print(gc.get_freeze_count() > 0, young_raised, after[1:] == before[1:])

asyncio.run(main())
"""


def test_a_started_app_freezes_its_heap_and_collects_the_young_generation_less_often(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """In a process of its own: the test process has started apps already."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_START_AND_REPORT),
            copy_sqlite(sqlite_template, tmp_path),
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["True", "True", "True"]
