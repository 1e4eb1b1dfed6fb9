"""Resident memory of this process or a server's: tests show a request took no gigabytes.

The app runs in the test process (httpx's ASGI transport), so its peak resident set is the
server's. Linux keeps the peak (VmHWM) since it was last reset; writing 5 to clear_refs
resets it, so a test measures its own peak and not an earlier test's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")


def _kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def resident_mib(pid: int) -> float:
    return _kib("VmRSS", pid) / 1024


def peak_resident_mib(pid: int) -> float:
    """The most the process has held since it started (or its peak was last reset)."""
    return _kib("VmHWM", pid) / 1024


@dataclass(slots=True)
class Growth:
    mib: float = 0.0


@contextmanager
def peak_growth() -> Iterator[Growth]:
    """How far the resident set rose above where it was when the block began (MiB)."""
    _CLEAR_REFS.write_text("5")
    start = _kib("VmRSS")
    growth = Growth()
    try:
        yield growth
    finally:
        growth.mib = (_kib("VmHWM") - start) / 1024
