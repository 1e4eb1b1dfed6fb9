"""This process's analytics: the store, the writer every event goes through, and the
migration that must finish before the writer may insert. Nothing here ever holds up a
request or stops the server: while the store is away, events wait in the spool.

The embedded store (chDB) is opened, and migrated, on first use: the first batch the writer
inserts or the first read, not at start-up. Loading chDB costs the process ~250 MB of
resident memory and a second of CPU, which a server that has not logged anything yet does
not need. A ClickHouse server is prepared at start-up, as before: connecting costs nothing,
and an unreachable store is reported at once."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog

from tablehouse.analytics.pipeline.spool import SlotBusy, waiting_slots
from tablehouse.analytics.pipeline.writer import BatchStore, EventWriter, WriterSettings, describe
from tablehouse.analytics.store.client import AnalyticsStore, StoreTarget, StoreUnavailable
from tablehouse.analytics.store.migrations import apply_ttl, migrate
from tablehouse.analytics.store.residency import release_start_up_pages
from tablehouse.config import Settings
from tablehouse.core.metrics import Metrics

log = structlog.get_logger(__name__)
RETRY_MAX_SECONDS = 30.0
# How long start-up waits for the store before serving without it (events then spool).
STARTUP_WAIT_SECONDS = 5.0
# How often the server looks for batches that other processes left in the spool: a CLI
# command spools its events while the server holds the embedded store.
ADOPT_INTERVAL_SECONDS = 1.0
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


def store_target(settings: Settings) -> StoreTarget:
    return StoreTarget.from_url(
        settings.analytics_url,
        database=settings.analytics_database,
        cluster=settings.analytics_cluster,
    )


async def prepare(store: AnalyticsStore, settings: Settings) -> list[str]:
    """Connect, create or update the tables, and set their TTLs: the migrations applied."""
    await store.connect()
    ttl = {
        "query_log_ttl_days": settings.query_log_ttl_days,
        "metrics_ttl_days": settings.metrics_ttl_days,
    }
    applied = await migrate(store, **ttl)
    await apply_ttl(store, **ttl)
    return applied


class _WhenPrepared:
    """The store as the writer sees it: prepared (connected, migrated) before the first
    insert; away while it cannot be, so early events are spooled and replayed in order
    rather than refused by a table that is not there yet."""

    def __init__(self, store: BatchStore, prepare: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.prepared = False
        self._prepare = prepare

    async def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> None:
        await self.ready()
        await self.store.insert(table, columns, rows, dedup_token=dedup_token)

    async def ready(self) -> None:
        """Prepare the store unless it is; ``StoreUnavailable`` if it cannot be now."""
        if not self.prepared:
            await self._prepare()


class _PreparedReader:
    """The store as the history endpoints read it: prepared before the first read, so a
    store nothing has been written to yet answers with empty tables, not missing ones."""

    def __init__(self, store: AnalyticsStore, gate: _WhenPrepared) -> None:
        self._store, self._gate = store, gate

    @property
    def target(self) -> StoreTarget:
        return self._store.target

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        await self._gate.ready()
        return await self._store.query(sql, parameters)


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One metric's value at one moment, for the ``metrics`` table."""

    kind: ClassVar[str] = "metric.sample"

    metric_name: str
    value: float
    metric_type: str
    tags: Mapping[str, str]
    timestamp: datetime

    def record(self) -> Mapping[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class Analytics:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._store = AnalyticsStore(store_target(settings))
        self._gate = _WhenPrepared(self._store, self._prepare_once)
        self.store = _PreparedReader(self._store, self._gate)
        # Embedded: prepared on first use (see the module's docstring).
        self._on_first_use = self._store.target.embedded
        self._preparation = asyncio.Lock()
        self.writer = EventWriter(
            self._gate,
            WriterSettings(
                spool_dir=settings.resolved_spool_dir,
                batch_size=settings.analytics_batch_size,
                flush_interval=settings.analytics_flush_interval_ms / 1000,
                queue_size=settings.analytics_queue_size,
            ),
        )
        self._preparing: asyncio.Task[None] | None = None
        self._sampling: asyncio.Task[None] | None = None
        self._adopting: asyncio.Task[None] | None = None
        self._prepare_error: str | None = None
        self._started = False

    async def start(self) -> None:
        """Start the writer. A ClickHouse server is prepared now: briefly in the foreground,
        so that the history endpoints work from the first request; then, if it is away, in
        the background. The embedded store waits for its first use."""
        await self.writer.start()
        self._started = True
        if self.metrics is not None:
            self._sampling = asyncio.create_task(self._sample_every_interval(self.metrics))
        self._adopting = asyncio.create_task(self._adopt_every_interval())
        if self._on_first_use:
            return
        self._preparing = asyncio.create_task(self._prepare_until_ready())
        try:
            await asyncio.wait_for(asyncio.shield(self._preparing), STARTUP_WAIT_SECONDS)
        except TimeoutError:
            log.warning("analytics.not_ready_at_start", store=self._store.target.describe())

    async def _prepare_until_ready(self) -> None:
        delay = 0.5
        while not self._gate.prepared:
            try:
                await self._prepare_once()
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _prepare_once(self) -> None:
        """Connect, migrate and set the TTLs, unless done; ``StoreUnavailable`` if the store
        cannot be prepared now (whatever the reason: no event is at fault, so none is
        refused for it; the writer keeps them and retries)."""
        async with self._preparation:
            if self._gate.prepared:
                return
            try:
                applied = await prepare(self._store, self.settings)
            except Exception as exc:
                if self._prepare_error is None:
                    log.warning(
                        "analytics.unavailable",
                        store=self._store.target.describe(),
                        error=describe(exc),
                    )
                self._prepare_error = describe(exc)
                if isinstance(exc, StoreUnavailable):
                    raise
                raise StoreUnavailable(self._prepare_error) from exc
            self._gate.prepared = True
            self._prepare_error = None
            released = await asyncio.to_thread(release_start_up_pages)
            log.info(
                "analytics.ready",
                store=self._store.target.describe(),
                migrated=applied,
                released_mib=round(released / 2**20),
            )

    async def _adopt_every_interval(self) -> None:
        while True:
            await asyncio.sleep(ADOPT_INTERVAL_SECONDS)
            # While the store is away the writer retries with backoff; adopting would only
            # fail (and warn) every second. An embedded store not opened yet is not away.
            ready = self._gate.prepared or self._prepare_error is None
            if ready and self.writer.counts().store_available:
                try:
                    await self.adopt()
                except Exception:  # a bug or a disk error must not end the loop
                    log.exception("analytics.adopt_failed")

    async def adopt(self) -> int:
        """Write what processes that have ended left in other spool slots; the events
        written. A slot still held (this process's own, another worker's, a command still
        running) is left alone."""
        root, written = self.settings.resolved_spool_dir, 0
        for slot in await asyncio.to_thread(waiting_slots, root):
            adopter = EventWriter(self._gate, WriterSettings(spool_dir=root), slot=slot)
            try:
                await adopter.adopt()
            except SlotBusy:
                continue
            written += adopter.counts().written
        if written:
            log.info("analytics.adopted", events=written)
        return written

    async def _sample_every_interval(self, metrics: Metrics) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_sample_interval_seconds)
            self.sample(metrics)

    def sample(self, metrics: Metrics) -> None:
        """Hand every metric's current value to the writer, all with one timestamp. Each
        process's counters start at zero: ``instance`` tells the processes apart."""
        now = datetime.now(UTC)
        for sample in metrics.samples():
            tags = {**sample.tags, "instance": INSTANCE}
            self.writer.emit(MetricSample(sample.name, sample.value, sample.kind, tags, now))

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a budget, not a wait)
        """Flush what waits in memory, spool what cannot be written, close the store."""
        if not self._started:
            return
        for task in (self._preparing, self._sampling, self._adopting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.metrics is not None:
            self.sample(self.metrics)  # the last values, so a short run is not lost
        await self.writer.stop(timeout)
        await self._store.close()

    def report(self) -> Mapping[str, object]:
        """For readiness: whether events reach the store, and how many wait where."""
        counts = self.writer.counts()
        if not self._gate.prepared:
            if self._prepare_error is not None:
                status = "unavailable"
            elif self._on_first_use and not self._preparation.locked():
                status = "idle"  # the embedded store, not needed yet: nothing is wrong
            else:
                status = "starting"
        else:
            status = "ok" if counts.store_available else "unavailable"
        return {
            "status": status,
            "store": self._store.target.describe(),
            "pending": counts.pending,
            "spooled": counts.spooled,
            "dead_lettered": counts.dead_lettered,
            "lost": counts.lost,
            "written": counts.written,
            "last_error": self._prepare_error or counts.last_error,
        }
