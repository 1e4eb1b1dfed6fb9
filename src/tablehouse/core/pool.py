"""A connection pool that serves waiting requests in the order they came.

SQLAlchemy's asyncio pool queues connections in an ``asyncio.Queue``. When a connection is
returned, the queue wakes its oldest waiter, but the connection stays in the queue until that
waiter runs, and a request arriving in the meantime takes it first (``get_nowait``); the
waiter finds the queue empty and goes to the back of the line. Under load, with more requests
than connections, a few requests lose that race again and again: with 32 clients on a pool of
10, a row read's p99 was 700 ms against a p50 of 30 ms (``bench/hot_paths.py``), and 77 ms
when the pool was large enough that nobody waited.

Here a returned connection is handed straight to the oldest waiter, so nobody can take it
on the way. Everything else is SQLAlchemy's ``AsyncAdaptedQueuePool``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import queue as sqla_queue
from sqlalchemy.util.concurrency import await_

T = TypeVar("T")


class FairAsyncQueue(sqla_queue.AsyncAdaptedQueue[T]):
    """First come, first served: ``put`` hands an item to the oldest waiter, if any.

    Invariant: items wait in the queue only while nobody waits for one, so whoever finds an
    item there jumps no line.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[T]] = deque()

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # given up (timed out, cancelled): the next one
                waiter.set_result(item)
                return
        super().put_nowait(item)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        try:
            return self.get_nowait()
        except sqla_queue.Empty:
            if not block:
                raise
        return await_(self._wait(timeout))

    async def _wait(self, seconds: float | None) -> T:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._waiters.append(waiter)
        # A timer, not a cancellation: a waiter that is handed an item keeps it.
        expiry = None if seconds is None else loop.call_later(seconds, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed an item just as this waiter was cancelled: pass it on, not lose it.
                self.put_nowait(waiter.result())
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def _expire(waiter: asyncio.Future[T]) -> None:
    if not waiter.done():
        waiter.set_exception(sqla_queue.Empty())


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` with a ``FairAsyncQueue``."""

    _queue_class = FairAsyncQueue[ConnectionPoolEntry]
