"""Per-key concurrency limits, kept in the process (each server worker has its own)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from tablehouse.errors import Throttled


class ConcurrencyLimit:
    """At most ``limit`` holders per key at once; one more is refused at once, never queued:
    a client that waits does better to retry than to hold a request open."""

    def __init__(self, limit: int, *, what: str, code: str) -> None:
        self.limit = limit
        self._what = what
        self._code = code
        self._held: dict[Hashable, int] = {}

    def in_use(self, key: Hashable) -> int:
        return self._held.get(key, 0)

    def acquire(self, key: Hashable) -> None:
        held = self._held.get(key, 0)
        if held >= self.limit:
            raise Throttled(
                f"at most {self.limit} {self._what} may run at once; retry when one has finished",
                retry_after_seconds=1,
                code=self._code,
            )
        self._held[key] = held + 1

    def release(self, key: Hashable) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    @contextmanager
    def slot(self, key: Hashable) -> Iterator[None]:
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)
