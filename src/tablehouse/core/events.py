"""The ports measured events leave and come back through (query log, metrics samples).

Producers hand an event over and go on: ``emit`` must never block or raise into the
request that produced it. With ANALYTICS_ENABLED=false, events are logged.

``EventPipeline`` is what the process keeps of the analytics domain (``Runtime.analytics``):
the store events are read back from, and a report of where they are, for readiness; typed
here so that the layers below the domains can hold it without importing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import structlog


class Event(Protocol):
    kind: ClassVar[str]

    def record(self) -> Mapping[str, Any]:
        """The event as plain values, one per column of its store."""
        ...


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class EventReader(Protocol):
    """Where events are read back: ClickHouse SQL with server-side parameters."""

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...


class EventPipeline(Protocol):
    """This process's analytics: the store events are read back from, and where they are now
    (for readiness: status, counts, last error). Its sink is ``Runtime.events``."""

    @property
    def store(self) -> EventReader: ...

    def report(self) -> Mapping[str, object]: ...


class LoggingEventSink:
    """Writes each event as one structured log line named after its kind."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("tablehouse.events")

    def emit(self, event: Event) -> None:
        self._log.info(event.kind, **event.record())


class CollectingEventSink:
    """Keeps events in memory, newest last: for tests and tools that inspect them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
