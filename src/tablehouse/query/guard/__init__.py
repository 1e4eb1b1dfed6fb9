"""The guard: which SQL a user may run, decided before any database sees it (layer 1 of
three; the read-only transaction and, on PostgreSQL, the owner's role are layers 2 and 3,
in ``query.backends``).

- ``analysis``: :func:`analyse` (one read-only statement over plain dataset names, allowed
  functions only) and :func:`render` (the checked tree, as the backend runs it);
- ``parsing`` and ``sqlglot_parsers``: sqlglot in each backend's dialect, with positions and
  a CPU budget (the only module reaching into sqlglot's private parser methods);
- ``checks``, ``functions``, ``sizes``: what a statement may contain, and how big it may grow;
- ``naming``: the column names the answer gives each projection;
- ``stored_types``: which output columns hold SQLite's stored dates and date-times;
- ``statements``: the cache of checked statements, and the threads that check them.

Only the query service imports this package.
"""

from tablehouse.query.guard.analysis import MAX_GENERATED_SIZE, Analysis, analyse, release, render
from tablehouse.query.guard.parsing import Budget
from tablehouse.query.guard.statements import (
    Checker,
    StatementCache,
    check_threads,
    statement_cache,
)

__all__ = [
    "MAX_GENERATED_SIZE",
    "Analysis",
    "Budget",
    "Checker",
    "StatementCache",
    "analyse",
    "check_threads",
    "release",
    "render",
    "statement_cache",
]
