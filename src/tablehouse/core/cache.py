"""A least-recently-used cache bounded by the bytes its entries take as well as by their count.

A count alone bounds nothing when entries differ in size by orders of magnitude (a parsed
statement of 60 KB takes some 30 MB). Each entry comes with an estimate of its size; the
least recently used entries are dropped until both bounds hold again, and an entry larger
than the whole budget is not kept at all. ``dropped`` is called with each value the cache
lets go of, for values that need more than the reference count to be freed. Used from the
event loop only: not thread-safe.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SizedCache(Generic[Key, Value]):
    def __init__(
        self,
        *,
        max_bytes: int,
        max_entries: int,
        dropped: Callable[[Value], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._dropped = dropped
        self.size = 0  # the sum of the estimates of the entries held
        self._entries: OrderedDict[Key, tuple[Value, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Value | None:
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: Key, value: Value, size: int) -> None:
        self.discard(key)
        if size > self.max_bytes:
            self._drop(value)
            return
        self._entries[key] = (value, size)
        self.size += size
        while self.size > self.max_bytes or len(self._entries) > self.max_entries:
            _, (oldest, oldest_size) = self._entries.popitem(last=False)
            self.size -= oldest_size
            self._drop(oldest)

    def discard(self, key: Key) -> None:
        held = self._entries.pop(key, None)
        if held is not None:
            self.size -= held[1]
            self._drop(held[0])

    def _drop(self, value: Value) -> None:
        if self._dropped is not None:
            self._dropped(value)
