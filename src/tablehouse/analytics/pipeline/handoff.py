"""Events of a short-lived command (``tablehouse query``) into the query log.

The command opens the store and writes them itself when it can. When it cannot, they go to
the spool, in a slot of the command's own: a running server holds the embedded store
(chDB opens a directory in one process at a time) and adopts that slot within a second
(``Analytics.adopt``); a ClickHouse server that is away gets them from the next server, or
from ``tablehouse analytics replay``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tablehouse.analytics.pipeline.lifecycle import prepare, store_target
from tablehouse.analytics.pipeline.writer import EventWriter, WriterSettings, describe
from tablehouse.analytics.store.client import AnalyticsStore, StoreLocked
from tablehouse.config import Settings
from tablehouse.core.events import Event


@dataclass(frozen=True, slots=True)
class HandOff:
    written: int  # events the store confirmed
    spooled: int  # events left in the spool
    lost: int  # events that could be neither written nor spooled
    held_elsewhere: bool  # the embedded store is open in another process, which adopts them
    error: str | None  # why the store did not take them, if it did not


class _NotTried:
    async def insert(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a stopped writer spools, it never inserts")


async def hand_off(settings: Settings, events: Sequence[Event]) -> HandOff:
    spool = WriterSettings(spool_dir=settings.resolved_spool_dir)
    store = AnalyticsStore(store_target(settings))
    reason: str | None = None
    held = False
    try:
        try:
            # What the server does at start: a fresh data directory gets its tables, and an
            # older one the columns these events carry.
            await prepare(store, settings)
        except Exception as exc:
            reason, held = describe(exc), isinstance(exc, StoreLocked)
            writer = EventWriter(_NotTried(), spool)
            await writer.stop()  # from here on, each event goes straight to the spool
        else:
            writer = EventWriter(store, spool)
        for event in events:
            writer.emit(event)
        if reason is None:
            await writer.stop()  # one insert; spooled if the store fails now
    finally:
        await store.close()
    counts = writer.counts()
    spooled = len(events) - counts.written - counts.lost
    error = (reason or counts.last_error) if spooled or counts.lost else None
    return HandOff(counts.written, spooled, counts.lost, held, error)
