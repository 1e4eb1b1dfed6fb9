"""Checked statements: the guard runs in a worker thread within a budget, so a statement
that takes long to parse never stalls the event loop, and what it decided (an analysis or a
refusal) and each rendering are kept in a cache bounded by bytes and by count.

sqlglot is pure Python, so a checking thread still holds the GIL while it works; it lets go
every few dozen parser steps (parsing.Clock), and the loop gets its turn. At most
CHECKS_AT_ONCE checks run at once in a process, so however many arrive, the loop competes
with a bounded number of them. A short statement, the everyday kind, is checked on the loop
itself: it costs less than the trip to a thread, and it never waits behind someone's long
statements for one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from tablehouse.config import Settings
from tablehouse.core.cache import SizedCache
from tablehouse.core.database import Backend
from tablehouse.errors import QueryRefused
from tablehouse.query.guard import stored_types
from tablehouse.query.guard.analysis import Analysis, analyse, release, render
from tablehouse.query.guard.parsing import Budget

# Memory a parsed and checked tree keeps, per node: 870-1,200 bytes were measured with
# tracemalloc over statements of 20,000 characters of several shapes (long OR chains, IN
# lists, many columns, CASE, function calls); estimates round it up.
BYTES_PER_NODE = 1536
# An entry's own keeping: the tuple, the dict slot, the Analysis or the refusal.
ENTRY_BYTES = 512
# What any tree keeps besides its nodes (measured: about 5,500 bytes for two nodes).
TREE_BYTES = 8192
# Statements checked at once per process in worker threads; more wait for a thread. As
# many as the machine this was measured on has cores: each one more takes a share of the
# GIL from the event loop.
CHECKS_AT_ONCE = 2
# Statements up to this many characters are checked on the event loop: a few ms at most
# (about 12 µs a character for the costliest shapes, 1.5 ms for a typical 130-character
# query), less than queueing for a thread behind long statements would cost.
INLINE_CHECK_CHARS = 512

StatementCache = SizedCache[Hashable, object]

_Result = TypeVar("_Result")


def statement_cache(settings: Settings) -> StatementCache:
    return SizedCache(
        max_bytes=settings.query_statement_cache_bytes,
        max_entries=settings.query_statement_cache_entries,
        dropped=_release,
    )


def _release(value: object) -> None:
    """A tree let go of is freed at once rather than at the collector's next full pass. A
    request still holding it only copies it (render), which reads no parent links."""
    if isinstance(value, Analysis):
        release(value.tree)


def check_threads() -> CapacityLimiter:
    return CapacityLimiter(CHECKS_AT_ONCE)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal as it is kept: a new error is raised from it each time, as an exception
    raised again would gather every traceback it went through."""

    message: str
    code: str
    line: int | None
    column: int | None

    @classmethod
    def of(cls, error: QueryRefused) -> Refusal:
        return cls(error.message, error.code, error.line, error.column)

    def error(self) -> QueryRefused:
        return QueryRefused(self.message, code=self.code, line=self.line, column=self.column)


@dataclass(frozen=True, slots=True)
class Checker:
    cache: StatementCache
    threads: CapacityLimiter
    budget: Budget

    async def analysed(self, sql: str, dialect: Backend) -> Analysis:
        """The guard's analysis of ``sql``, or its refusal raised, each checked once."""
        key = ("analysed", dialect, sql)
        cached = self.cache.get(key)
        if isinstance(cached, Analysis | Refusal):
            found = cached
        else:
            found = await self._run(sql, _analysis_or_refusal, sql, dialect, self.budget)
            self.cache.put(key, found, analysis_size(sql, found))
        if isinstance(found, Refusal):
            raise found.error()
        return found

    async def rendered(
        self,
        sql: str,
        analysis: Analysis,
        dialect: Backend,
        physical: Mapping[str, str],
        identity: Hashable,
        fields: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> Rendering:
        """The statement for the backend, reading ``physical`` tables, and the types of its
        output that the backend must know (``fields``: each dataset's, by name as written).
        ``identity`` (the datasets' ids and versions) is part of the key: a dataset changed
        or made anew is rendered afresh."""
        key = ("rendered", dialect, sql, identity)
        found = self.cache.get(key)
        if isinstance(found, Rendering):
            return found
        rendering = await self._run(sql, _rendering, analysis, physical, dialect, fields or {})
        size = ENTRY_BYTES + 2 * sys.getsizeof(sql) + sys.getsizeof(rendering.sql)
        if rendering.output is not None:
            size += ENTRY_BYTES + sum(sys.getsizeof(name) for name in rendering.output.names)
        self.cache.put(key, rendering, size)
        return rendering

    async def _run(self, sql: str, work: Callable[..., _Result], *args: object) -> _Result:
        """``work`` about ``sql``: on the loop when the statement is short, else in a thread."""
        if len(sql) <= INLINE_CHECK_CHARS:
            return work(*args)
        return await anyio.to_thread.run_sync(work, *args, limiter=self.threads)


@dataclass(frozen=True, slots=True)
class Rendering:
    sql: str
    output: stored_types.OutputTypes | None


def _rendering(
    analysis: Analysis,
    physical: Mapping[str, str],
    dialect: Backend,
    fields: Mapping[str, Sequence[tuple[str, str]]],
) -> Rendering:
    return Rendering(
        sql=render(analysis, physical, dialect),
        output=stored_types.output_types(analysis.tree, fields, dialect),
    )


def analysis_size(sql: str, found: Analysis | Refusal) -> int:
    """An estimate, from above, of the bytes an entry keeps: the text of its key, and its
    tree (whose literals may hold as much text again) or its message."""
    text = sys.getsizeof(sql)  # 1, 2 or 4 bytes a character, as Python stores it
    if isinstance(found, Refusal):
        return ENTRY_BYTES + text + sys.getsizeof(found.message)
    return ENTRY_BYTES + TREE_BYTES + 2 * text + BYTES_PER_NODE * found.nodes


def _analysis_or_refusal(sql: str, dialect: Backend, budget: Budget) -> Analysis | Refusal:
    try:
        return analyse(sql, dialect, budget)
    except QueryRefused as error:
        return Refusal.of(error)
