"""The writer's local disk: batches the store could not take yet, and events it refused.

Each process claims a slot, ``<root>/slot-<k>/``, the lowest one whose ``lock`` file it can
``flock``: app workers sharing one spool root never touch each other's files, and a
restarted worker adopts the slot (and the batches) one that ended left behind. In a slot:

- ``spool-<n>.ndjson``: append-only segments, ``n`` increasing (12 digits, so names sort).
  One line per batch: ``{"table", "token", "columns", "rows"}`` with UUIDs and datetimes
  as strings. A process never appends to a segment found at open, so a torn last line
  stays the last line of its segment.
- ``spool-<n>.pos``: how many bytes of that segment are confirmed written to the store.
  Replaced (write then rename, not fsync'd) after each confirmed batch: after an OS crash
  a few confirmed batches may be sent again, which the store drops by their token.
  A segment and its ``.pos`` are deleted once every batch in it is confirmed.
- ``dead_letter.ndjson``: append-only, one line per event set aside (refused by the store,
  unknown kind, not convertible) or per unreadable spool line, with the reason and error.

Lines are written with ``os.write`` and no fsync; ``sync()`` fsyncs, and is meant to run
in a worker thread right after. A killed process loses nothing written (the page cache
survives it); an OS crash can lose what was not yet synced.

Thread safety: one mutex guards the index and the descriptors and is not held while
fsyncing or reading a batch back, so ``sync`` and ``peek`` can run in worker threads while
the event loop appends. Only one consumer may ``peek``/``confirm``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

log = structlog.get_logger(__name__)

DEAD_LETTER = "dead_letter.ndjson"
_SEGMENT = re.compile(r"^spool-(\d+)\.ndjson$")


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    table: str
    token: str
    columns: tuple[str, ...]
    rows: list[list[Any]]  # JSON values: the table spec's row_from_json restores the types


@dataclass(frozen=True, slots=True)
class _Entry:
    segment: int
    start: int
    end: int
    events: int


def _parse(line: bytes) -> SpooledBatch:
    value = orjson.loads(line)
    table, token, columns, rows = value["table"], value["token"], value["columns"], value["rows"]
    if not (isinstance(table, str) and isinstance(token, str)):
        raise ValueError("table and token must be strings")
    if not (isinstance(columns, list) and isinstance(rows, list)):
        raise ValueError("columns and rows must be lists")
    return SpooledBatch(table, token, tuple(columns), rows)


def letters(
    reason: str, error: str, table: str, token: str, columns: Sequence[str], rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """Dead-letter entries, one per row, each enough to re-insert it by hand."""
    base = {"reason": reason, "error": error, "table": table, "token": token, "columns": columns}
    return [{**base, "row": row} for row in rows]


class SlotBusy(OSError):
    """The one slot asked for is claimed by a live process."""


def waiting_slots(root: Path) -> list[int]:
    """Slots with segments in them, whoever holds them: those that may need adopting."""
    found = []
    for directory in root.glob("slot-*"):
        number = directory.name.removeprefix("slot-")
        if number.isdigit() and any(directory.glob("spool-*.ndjson")):
            found.append(int(number))
    return sorted(found)


class Spool:
    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        slots: int = 256,
        slot: int | None = None,
    ) -> None:
        """``slot``: claim that slot only (to adopt what a process that ended left in it),
        raising ``SlotBusy`` if a live process holds it; by default, the lowest free one."""
        self.root = root
        self.directory = root / f"slot-{slot or 0}"  # the slot claimed at open
        self.segment_bytes, self.slots, self.only = segment_bytes, slots, slot
        self.events = 0  # events in unconfirmed batches
        self.dead_lettered = 0  # lines in the dead-letter file, earlier processes' included
        self._mutex = threading.Lock()
        self._claim: int | None = None  # the slot's flock'd descriptor while open
        self._index: deque[_Entry] = deque()
        self._next_segment = 1
        self._active: int | None = None  # segment number being appended to
        self._fd: int | None = None
        self._size = 0
        self._dead_fd: int | None = None
        self._dirty: set[int] = set()  # descriptors written since the last sync

    @property
    def batches(self) -> int:
        return len(self._index)

    def _segment(self, number: int) -> Path:
        return self.directory / f"spool-{number:012d}.ndjson"

    def open(self) -> None:
        """Claim a slot and index what earlier processes left in it, oldest first."""
        with self._mutex:
            self._open_locked()

    def _open_locked(self) -> None:
        if self._claim is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for slot in range(self.slots) if self.only is None else (self.only,):
            directory = self.root / f"slot-{slot}"
            directory.mkdir(exist_ok=True)
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._claim, self.directory = fd, directory
            break
        else:
            if self.only is not None:
                raise SlotBusy(f"spool slot {self.only} under {self.root} is in use")
            raise OSError(f"all {self.slots} spool slots under {self.root} are in use")
        self._index.clear()
        self.events = 0
        try:
            found = sorted(int(m[1]) for p in directory.iterdir() if (m := _SEGMENT.match(p.name)))
            for number in found:
                self._scan(number)
            with contextlib.suppress(FileNotFoundError), (directory / DEAD_LETTER).open("rb") as f:
                self.dead_lettered = sum(c.count(b"\n") for c in iter(lambda: f.read(2**20), b""))
        except BaseException:
            self._close_locked()  # read again from the start next time
            raise
        self._next_segment = (found[-1] + 1) if found else 1

    def _scan(self, number: int) -> None:
        path = self._segment(number)
        position = _read_position(path)
        before = len(self._index)
        with path.open("rb") as f:
            f.seek(position)
            for line in f:
                start, position = position, position + len(line)
                if not line.endswith(b"\n"):
                    # The process died while writing this line: what it held never reached
                    # the spool whole. Kept verbatim in the dead letters, cut from the segment.
                    log.warning("spool.torn_line", segment=str(path), offset=start, size=len(line))
                    self._dead_letter_locked([_unreadable("torn_line", path, start, line)])
                    os.truncate(path, start)
                    break
                try:
                    batch = _parse(line)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("spool.corrupt_line", segment=str(path), offset=start, error=str(exc))
                    self._dead_letter_locked([_unreadable("corrupt_line", path, start, line)])
                    continue
                self.events += len(batch.rows)
                self._index.append(_Entry(number, start, position, len(batch.rows)))
        if len(self._index) == before:
            _remove(path)

    def append(self, batches: Sequence[tuple[str, str, Sequence[str], Sequence[Any]]]) -> None:
        """Add ``(table, token, columns, rows)`` batches after everything already spooled."""
        lines = [
            orjson.dumps({"table": t, "token": k, "columns": c, "rows": r}) + b"\n"
            for t, k, c, r in batches
        ]
        with self._mutex:
            self._open_locked()
            if self._fd is None or self._size >= self.segment_bytes:
                self._close_active(sync=True)
                self._active, self._next_segment = self._next_segment, self._next_segment + 1
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                self._fd = os.open(self._segment(self._active), flags, 0o600)
                self._size = 0
            assert self._active is not None
            start = self._size
            try:
                _write_all(self._fd, b"".join(lines))
            except OSError:
                # Leave no partial line behind for later appends to follow; if the cut fails
                # too, retire the segment so the torn line stays its last (replay skips it).
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    self._close_active(sync=False)
                raise
            self._dirty.add(self._fd)
            for line, (_, _, _, rows) in zip(lines, batches, strict=True):
                self._index.append(_Entry(self._active, start, start + len(line), len(rows)))
                self.events += len(rows)
                start += len(line)
            self._size = start

    def dead_letter(self, entries: Sequence[Mapping[str, Any]]) -> None:
        with self._mutex:
            self._open_locked()
            self._dead_letter_locked(entries)

    def _dead_letter_locked(self, entries: Sequence[Mapping[str, Any]]) -> None:
        if self._dead_fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._dead_fd = os.open(self.directory / DEAD_LETTER, flags, 0o600)
        at = datetime.now(UTC).isoformat()
        data = b"".join(orjson.dumps({"at": at, **e}, default=str) + b"\n" for e in entries)
        _write_all(self._dead_fd, data)
        self._dirty.add(self._dead_fd)
        self.dead_lettered += len(entries)

    def sync(self) -> None:
        """fsync what was written since the last call; safe from a worker thread."""
        with self._mutex:
            copies = [os.dup(fd) for fd in self._dirty]
            self._dirty.clear()
        try:
            for fd in copies:
                os.fsync(fd)
        finally:
            for fd in copies:
                os.close(fd)

    def peek(self) -> SpooledBatch | None:
        """The oldest unconfirmed batch, read back from disk; safe from a worker thread."""
        with self._mutex:
            if not self._index:
                return None
            entry = self._index[0]
        with self._segment(entry.segment).open("rb") as f:
            f.seek(entry.start)
            return _parse(f.read(entry.end - entry.start))

    def confirm(self) -> None:
        """The batch ``peek`` returned is in the store: move past it for good."""
        with self._mutex:
            entry = self._index.popleft()
            self.events -= entry.events
            path = self._segment(entry.segment)
            if self._index and self._index[0].segment == entry.segment:
                tmp = path.with_suffix(".pos.tmp")
                tmp.write_text(str(entry.end))
                tmp.replace(path.with_suffix(".pos"))
                return
            # Every batch of this segment is in the store. The segment being appended to is
            # the newest, so it is only finished here when nothing at all is left.
            if entry.segment == self._active:
                self._close_active(sync=False)
            _remove(path)

    def _close_active(self, *, sync: bool) -> None:
        if self._fd is not None:
            self._dirty.discard(self._fd)
            if sync:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
            os.close(self._fd)
        self._fd, self._active = None, None

    def close(self) -> None:
        """fsync, close the files and free the slot; counts stay as they were.

        Any later call claims a slot again and re-reads it from disk.
        """
        with self._mutex:
            self._close_locked()

    def _close_locked(self) -> None:
        self._close_active(sync=True)
        if self._dead_fd is not None:
            self._dirty.discard(self._dead_fd)
            with contextlib.suppress(OSError):
                os.fsync(self._dead_fd)
            os.close(self._dead_fd)
            self._dead_fd = None
        if self._claim is not None:
            os.close(self._claim)  # releases the flock
            self._claim = None


def _read_position(path: Path) -> int:
    try:
        return int(path.with_suffix(".pos").read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _remove(path: Path) -> None:
    for p in (path, path.with_suffix(".pos")):
        p.unlink(missing_ok=True)


def _unreadable(reason: str, path: Path, offset: int, line: bytes) -> dict[str, Any]:
    raw = line.decode("utf-8", "replace").rstrip("\n")
    return {"reason": reason, "segment": path.name, "offset": offset, "raw": raw}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
