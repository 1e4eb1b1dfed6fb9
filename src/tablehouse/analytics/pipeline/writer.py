"""The buffered writer: events leave the request at once and reach the store in batches.

``emit`` converts the event to its row and appends it to an in-memory queue: no I/O, no
await, no exception. One flusher task on the same loop inserts a table's batch as soon as
it has ``batch_size`` rows, and whatever is pending every ``flush_interval``. Each batch
gets a random dedup token that it keeps for good (the spool stores it with the batch), so a
batch sent twice is stored once.

- Store unavailable (any error ``classify`` does not call a rejection): the batch goes to
  the spool (``spool.py``), and so does every later batch while anything is spooled. The
  oldest spooled batch is retried with doubling backoff; once it is taken the spool is
  replayed oldest first, then memory is flushed directly again. Meanwhile memory joins the
  spool in full batches, and what is left of it at most once a second (or once a flush
  interval, if longer), so an outage leaves few, large batches to replay. One warning when
  the store goes away, one info line when it is back.
- Store refuses a batch: it is halved (tokens derived from its own) until the refused
  events are alone; they go to the dead-letter file with the error, the rest is written.
- Queue full (``queue_size`` events): ``emit`` appends the oldest ``batch_size`` events of
  the longest table, and the batch being inserted if any, to the spool. One ``os.write``,
  no fsync (the flusher fsyncs in a worker thread): a page-cache write per ``batch_size``
  events of overflow, never a wait on the store.

Guarantees:

- Order, per table: each batch is a contiguous run of events in the order ``emit`` took
  them, and it is sent only once every earlier batch of its table is confirmed written (or
  its refused events dead-lettered). A re-send (an insert whose outcome is unknown, a
  crash before the spool recorded a confirmation) carries the original token, so with the
  store's token deduplication every event is stored once, in emission order. Nothing is
  promised across tables. Emitting from another thread hands the event to the loop with
  ``call_soon_threadsafe``: its order is the loop's.
- Durability: every accepted event is in memory, in the store, in the spool or in the
  dead-letter file. ``stop()`` empties memory into the store or the spool. A crash loses
  memory (at most ``queue_size`` events plus one batch; while the store is away, at most a
  second's events, up to a batch per table); an OS crash, what the spool had not yet
  fsynced. Otherwise an event is lost only when it needs the disk (queue full,
  store away, after ``stop()``, dead letter) and the spool cannot be written (missing or
  read-only directory, disk full): it is counted in ``counts().lost`` and logged.
- A batch whose refused events were being isolated when the store went away is isolated
  again on replay: its dead letters may then appear twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from tablehouse.analytics.pipeline.spool import Spool, letters
from tablehouse.analytics.store.tables import DEFAULT_TABLES, TableSpec
from tablehouse.core.events import Event

log = structlog.get_logger(__name__)

Row = tuple[Any, ...]


class BatchStore(Protocol):
    async def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> None: ...


def is_rejection(error: BaseException) -> bool:
    """Whether the store refused the data itself (set it aside) rather than being away (retry).

    Matches the store's ``StoreRejected`` by class name, or any error with ``rejected = True``,
    so this module needs no import of the store. The writer takes another one as ``classify``.
    """
    return getattr(error, "rejected", False) is True or any(
        cls.__name__ == "StoreRejected" for cls in type(error).__mro__
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterSettings:
    spool_dir: Path
    batch_size: int = 1000
    flush_interval: float = 1.0  # seconds
    queue_size: int = 100_000  # events held in memory before the oldest go to the spool
    retry_initial: float = 0.5  # seconds before the first retry, doubling
    retry_max: float = 30.0
    # While the spool is in use, the least time between two partial batches joining it (or
    # the flush interval, if longer).
    partial_spool_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.queue_size < 1 or self.flush_interval <= 0:
            raise ValueError("batch_size, queue_size and flush_interval must be positive")


@dataclass(frozen=True, slots=True)
class WriterCounts:
    pending: int  # events in memory, the batch being inserted included
    spooled: int  # events (not batches) waiting in the spool; earlier processes' after start()
    spooled_batches: int
    dead_lettered: int  # lines in the dead-letter file: events, or unreadable spool lines
    written: int  # events the store confirmed since start
    failures: int  # failed insert attempts since start
    lost: int  # events that could be neither kept nor spooled (see the module docstring)
    store_available: bool
    last_error: str | None  # "Type: message" of the last failed insert, credentials masked


@dataclass(slots=True, eq=False)
class _Batch:
    table: str
    rows: list[Row]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    spooled: bool = False  # copied to the spool while its insert was in flight


class _Unavailable(Exception):
    pass


_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")


def describe(error: BaseException) -> str:
    text = _CREDENTIALS.sub(r"\1***@", f"{type(error).__name__}: {error}")
    return text if len(text) <= 300 else text[:299] + "…"


class EventWriter:
    """An ``EventSink`` into a ``BatchStore``; see the module docstring."""

    def __init__(
        self,
        store: BatchStore,
        settings: WriterSettings,
        *,
        tables: Mapping[str, TableSpec] = DEFAULT_TABLES,
        classify: Callable[[BaseException], bool] = is_rejection,
        slot: int | None = None,
    ) -> None:
        """``slot``: use that spool slot only (see ``adopt``); by default the lowest free one."""
        self._store, self._settings, self._is_rejection = store, settings, classify
        self._kinds = dict(tables)
        self._specs = {spec.table: spec for spec in tables.values()}
        self._spool = Spool(settings.spool_dir, slot=slot)
        self._memory: dict[str, deque[Row]] = {table: deque() for table in self._specs}
        self._queued = 0
        self._in_flight: _Batch | None = None
        self._written_early: set[str] = set()  # tokens of spooled batches the store took
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._stopping = self._stopped = False
        self._available = True
        self._retry_at = 0.0
        self._delay = settings.retry_initial
        self._last_drain = self._last_partial_spool = 0.0
        self._partial_every = max(settings.flush_interval, settings.partial_spool_interval)
        self._written = self._failures = self._lost = 0
        self._last_error: str | None = None
        self._unsynced = False
        self._spool_failing = False

    # -- the request side ------------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            if self._thread is not None and threading.get_ident() != self._thread:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self.emit, event)
                return
            spec = self._kinds.get(event.kind)
            if spec is None:
                self._dead_letter_event(event, "unknown_kind", f"no table for {event.kind!r}")
                return
            try:
                row = spec.row(event.record())
            except Exception as exc:
                self._dead_letter_event(event, "unconvertible", describe(exc))
                return
            if self._stopped:  # straight to disk, and the slot freed again for the next start
                self._spool_or_lose([_Batch(spec.table, [row])], sync=True)
                self._spool.close()
                return
            if self._queued >= self._settings.queue_size and not self._spill():
                self._lose(1, "queue full and the spool cannot be written")
                return
            queue = self._memory[spec.table]
            queue.append(row)
            self._queued += 1
            if len(queue) >= self._settings.batch_size:
                self._wake.set()
        except Exception:
            log.exception("analytics.emit_failed")
            self._lose(1, "emit failed")

    def _spill(self) -> bool:
        """Queue full: its oldest events (and the insert in flight, older still) to the spool."""
        batches = []
        flying = self._in_flight
        if flying is not None and not flying.spooled:
            batches.append(flying)
        table = max(self._memory, key=lambda t: len(self._memory[t]))
        queue = self._memory[table]
        oldest = _Batch(
            table, [queue.popleft() for _ in range(min(self._settings.batch_size, len(queue)))]
        )
        batches.append(oldest)
        if not self._spool_or_lose(batches, lose=False):
            queue.extendleft(reversed(oldest.rows))
            return False
        self._queued -= len(oldest.rows)
        if flying is not None:
            flying.spooled = True
        self._wake.set()  # the flusher fsyncs
        return True

    def _spool_or_lose(
        self, batches: Sequence[_Batch], *, sync: bool = False, lose: bool = True
    ) -> bool:
        """Append to the spool; on failure count the events lost, or leave them to the caller."""
        try:
            self._spool.append(
                [(b.table, b.token, self._specs[b.table].columns, b.rows) for b in batches]
            )
            if sync:
                self._spool.sync()
            else:
                self._unsynced = True
        except OSError as exc:
            if not self._spool_failing:  # once, not once per batch
                self._spool_failing = True
                log.error("analytics.spool_failed", root=str(self._spool.root), error=describe(exc))
            if lose:
                self._lose(sum(len(b.rows) for b in batches), "the spool cannot be written")
            return False
        if self._spool_failing:
            self._spool_failing = False
            log.info("analytics.spool_writable", root=str(self._spool.root))
        return True

    def _dead_letter(self, entries: Sequence[Mapping[str, Any]]) -> None:
        try:
            self._spool.dead_letter(entries)
            self._unsynced = True
        except OSError as exc:
            log.error("analytics.dead_letter_failed", error=describe(exc))
            self._lose(len(entries), "the dead-letter file cannot be written")

    def _dead_letter_event(self, event: Event, reason: str, error: str) -> None:
        try:
            record = dict(event.record())
        except Exception as exc:
            record = {"unreadable": describe(exc)}
        self._dead_letter(
            [{"reason": reason, "error": error, "kind": event.kind, "record": record}]
        )

    def _lose(self, events: int, reason: str) -> None:
        before, self._lost = self._lost, self._lost + events
        if before == 0 or before // 1000 != self._lost // 1000:  # not a line per event
            log.error("analytics.events_lost", lost=self._lost, reason=reason)

    def counts(self) -> WriterCounts:
        flying = self._in_flight
        return WriterCounts(
            pending=self._queued + (len(flying.rows) if flying and not flying.spooled else 0),
            spooled=self._spool.events,
            spooled_batches=self._spool.batches,
            dead_lettered=self._spool.dead_lettered,
            written=self._written,
            failures=self._failures,
            lost=self._lost,
            store_available=self._available,
            last_error=self._last_error,
        )

    # -- the flusher -----------------------------------------------------------------

    async def start(self) -> None:
        """Index what an earlier process spooled (replayed first), then start flushing."""
        if self._task is not None or self._stopping:
            return
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        self._last_drain = self._loop.time()
        try:
            await asyncio.to_thread(self._spool.open)
        except OSError as exc:  # retried on first use; until then only memory
            log.error(
                "analytics.spool_unusable",
                directory=str(self._spool.root),
                error=describe(exc),
            )
        if self._spool.batches:
            log.info(
                "analytics.spool_found", batches=self._spool.batches, events=self._spool.events
            )
        self._task = asyncio.create_task(self._run(), name="analytics-writer")

    async def adopt(self) -> None:
        """Claim this writer's slot, write what it holds oldest first, and free it again;
        for a slot whose process ended (a command that spooled its events while a server
        held the store). Raises ``SlotBusy`` while a live process holds it. Stops at the
        first batch the store does not take: the rest waits for the next call."""
        await asyncio.to_thread(self._spool.open)
        try:
            await self._replay()
        finally:
            self._spool.close()  # fsyncs what was dead-lettered

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (the interface)
        """Flush memory (one attempt per batch); spool what is not written within ``timeout``."""
        if self._stopped:
            return
        self._stopping = True
        self._wake.set()
        task = self._task or asyncio.create_task(self._cycle(final=True))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning("analytics.stop_timeout", timeout=timeout)
        finally:
            if not task.done():
                # Cancelled mid-insert, its batch stays ``_in_flight`` and is spooled below:
                # stored or not, the replay's token settles it.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._spool_leftovers()
            self._stopped, self._task = True, None
            self._spool.close()

    def _spool_leftovers(self) -> None:
        batches, flying, self._in_flight = [], self._in_flight, None
        if flying is not None and not flying.spooled:
            batches.append(flying)
        batches += self._take_memory(everything=True)
        if batches:
            self._spool_or_lose(batches, sync=True)

    def _take_memory(self, *, everything: bool) -> list[_Batch]:
        """Full batches out of memory, and partial ones if ``everything``."""
        batches, size = [], self._settings.batch_size
        for table, queue in self._memory.items():
            while len(queue) >= size or (everything and queue):
                batches.append(
                    _Batch(table, [queue.popleft() for _ in range(min(size, len(queue)))])
                )
                self._queued -= len(batches[-1].rows)
        return batches

    def _put_back(self, batches: Sequence[_Batch]) -> None:
        for batch in reversed(batches):
            self._memory[batch.table].extendleft(reversed(batch.rows))
            self._queued += len(batch.rows)

    async def _run(self) -> None:
        while not self._stopping:
            deadline = self._last_drain + self._settings.flush_interval
            if self._spool.batches or not self._available:
                deadline = min(deadline, self._retry_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            if not self._stopping:
                await self._cycle(final=False)
        await self._cycle(final=True)

    async def _cycle(self, *, final: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._wake.clear()
            now = loop.time()
            drain = final or now >= self._last_drain + self._settings.flush_interval
            if drain:
                self._last_drain = now
            may_try = final or now >= self._retry_at
            if may_try and not final and self._spool.batches:
                await self._replay()
            if may_try and not self._spool.batches:
                await self._flush_memory(everything=drain)
            if self._spool.batches:
                # Memory is newer than the spool: it waits behind it, on disk. Full batches go
                # at once, partial ones at most once a second: every spooled batch is one
                # insert on replay, and a short flush interval would make thousands of tiny ones.
                partial = final or (drain and now >= self._last_partial_spool + self._partial_every)
                if partial:
                    self._last_partial_spool = now
                batches = self._take_memory(everything=partial)
                if batches and not self._spool_or_lose(batches, lose=False):
                    self._put_back(batches)
            if self._unsynced:
                self._unsynced = False
                await asyncio.to_thread(self._spool.sync)
        except Exception:  # a bug or a disk error must not end the flusher
            log.exception("analytics.flusher_error")
            self._retry_at = loop.time() + self._delay

    async def _flush_memory(self, *, everything: bool) -> None:
        for table, queue in self._memory.items():
            spec, size = self._specs[table], self._settings.batch_size
            # A timed flush writes what was queued when it began. Events that arrive while it
            # inserts wait for the next one (or a full batch): under steady load, draining to
            # empty would insert a handful of rows at a time, back to back.
            leftover = len(queue) if everything else 0
            while queue and (len(queue) >= size or leftover > 0):
                if self._spool.batches:
                    return  # emit spilled meanwhile: the spool is older, it goes first
                batch = _Batch(table, [queue.popleft() for _ in range(min(size, len(queue)))])
                leftover -= len(batch.rows)
                self._queued -= len(batch.rows)
                self._in_flight = batch  # left set if cancelled: stop() spools it
                try:
                    await self._deliver(spec, batch.token, batch.rows)
                except _Unavailable:
                    self._in_flight = None
                    if not batch.spooled and not self._spool_or_lose([batch], lose=False):
                        self._put_back([batch])
                    return
                self._in_flight = None
                if batch.spooled:
                    self._written_early.add(batch.token)

    async def _replay(self) -> None:
        while self._spool.batches and not self._stopping:
            batch = await asyncio.to_thread(self._spool.peek)
            if batch is None:
                return
            if batch.token in self._written_early:
                self._written_early.discard(batch.token)
                self._spool.confirm()
                continue
            table = self._specs.get(batch.table)
            spec = None if table is None else table.narrowed(batch.columns)
            try:
                if spec is None:
                    raise ValueError(f"no table {batch.table!r} with columns {batch.columns}")
                rows = [spec.row_from_json(values) for values in batch.rows]
            except Exception as exc:  # written by another version: set aside, go on
                columns, error = batch.columns, describe(exc)
                self._dead_letter(
                    letters("unreadable", error, batch.table, batch.token, columns, batch.rows)
                )
                self._spool.confirm()
                continue
            try:
                await self._deliver(spec, batch.token, rows)
            except _Unavailable:
                return
            self._spool.confirm()

    async def _deliver(self, spec: TableSpec, token: str, rows: list[Row]) -> None:
        """Insert, or raise ``_Unavailable``; refused rows are isolated by halving and set aside.

        Halves get tokens derived from the batch's, so a replay of a half-written batch
        re-sends the same halves and the store drops the ones it has.
        """
        try:
            await self._store.insert(spec.table, spec.columns, rows, dedup_token=token)
        except Exception as exc:
            self._failures += 1
            self._last_error = describe(exc)
            if not self._is_rejection(exc):
                self._unavailable(exc)
                raise _Unavailable from exc
            self._back_online()
            if len(rows) > 1:
                half = len(rows) // 2
                await self._deliver(spec, f"{token}.0", rows[:half])
                await self._deliver(spec, f"{token}.1", rows[half:])
                return
            self._dead_letter(
                letters("rejected", describe(exc), spec.table, token, spec.columns, rows)
            )
            return
        self._written += len(rows)
        self._back_online()

    def _unavailable(self, error: Exception) -> None:
        if self._available:
            self._available = False
            self._delay = self._settings.retry_initial
            log.warning(
                "analytics.store_unavailable",
                error=describe(error),
                spool=str(self._spool.root),
            )
        self._retry_at = asyncio.get_running_loop().time() + self._delay
        self._delay = min(self._delay * 2, self._settings.retry_max)

    def _back_online(self) -> None:
        if not self._available:
            self._available = True
            log.info("analytics.store_available", spooled=self._spool.events)
        self._delay, self._retry_at = self._settings.retry_initial, 0.0
