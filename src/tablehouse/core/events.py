"""The port that measured events leave through (query log, later request metrics).

Producers hand an event over and go on: ``emit`` must never block or raise into the
request that produced it. Until the analytics store is plugged in, events are logged.
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
