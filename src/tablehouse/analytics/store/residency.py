"""Give back the pages of chDB's library that only its start-up used.

Loading chDB runs ClickHouse's start-up (registering thousands of functions, formats and
settings, starting the engine), which reads ~160 MB of its 550 MB library into the process:
resident memory, though most of it never runs again (and pyarrow and numpy, which chDB
imports, add ~20 MB more of the same). These are clean pages of a read-only
file mapping: the kernel would drop them under memory pressure anyway and read them back
when needed, and ``MADV_DONTNEED`` does that now. What the engine then runs comes back on
first use, from the page cache (a minor fault, no disk read while the file is cached).

Only mappings that are read-only and hold no page of their own (``Anonymous`` and
``Private_Dirty`` 0) are released: there, dropping a page and reading it back from the file
gives the same bytes. The relocated ones (RELRO: read-only, but written by the loader) and
the writable ones are left alone. Linux only; elsewhere, or if anything is unexpected,
nothing is released.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

MADV_DONTNEED = 4
SMAPS = "/proc/self/smaps"


@dataclass(slots=True)
class _Mapping:
    start: int
    end: int
    permissions: str
    path: str
    resident_kib: int = 0
    own_kib: int = 0  # Anonymous + Private_Dirty: pages that differ from the file


# chDB and the packages it imports with it (pyarrow, numpy), whose libraries' start-up pages
# are as idle as its own: by their module, the folder their libraries are loaded from.
PACKAGES = ("chdb", "pyarrow", "numpy")


def chdb_library() -> str | None:
    """The path of chDB's engine library, if this process has loaded it."""
    module = sys.modules.get("chdb._chdb")
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if path else None


def _folders() -> list[str]:
    """The folders of the loaded ``PACKAGES``, and their wheels' ``<name>.libs`` next to
    them, each ending with a separator; none unless chDB is loaded."""
    if chdb_library() is None:
        return []
    folders = []
    for name in PACKAGES:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            folder = os.path.dirname(os.path.realpath(path))
            folders += [folder + os.sep, folder + ".libs" + os.sep]
    return folders


def _mappings(folders: Sequence[str]) -> list[_Mapping]:
    found: list[_Mapping] = []
    current: _Mapping | None = None
    prefixes = tuple(folders)
    with open(SMAPS) as smaps:
        for line in smaps:
            field, _, rest = line.partition(" ")
            if not field.endswith(":"):  # a mapping's header: range perms offset dev inode path
                parts = line.split(maxsplit=5)
                current = None
                path = parts[5].rstrip("\n") if len(parts) == 6 else ""  # resolved
                if path.startswith(prefixes):
                    start, _, end = parts[0].partition("-")
                    current = _Mapping(int(start, 16), int(end, 16), parts[1], path)
                    found.append(current)
            elif current is not None:
                if field == "Rss:":
                    current.resident_kib = int(rest.split()[0])
                elif field in ("Anonymous:", "Private_Dirty:", "Shared_Dirty:"):
                    current.own_kib += int(rest.split()[0])
    return found


def release_start_up_pages() -> int:
    """Drop the resident clean pages of chDB's libraries (and pyarrow's and numpy's); the
    bytes released. 0 if chDB is not loaded, or on any surprise."""
    folders = _folders()
    if not folders or not sys.platform.startswith("linux"):
        return 0
    try:
        mappings = _mappings(folders)
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, ValueError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    released = 0
    for mapping in mappings:
        read_only = mapping.permissions in ("r--p", "r-xp")
        if not read_only or mapping.own_kib or not mapping.resident_kib:
            continue
        if madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) == 0:
            released += mapping.resident_kib * 1024
    return released
