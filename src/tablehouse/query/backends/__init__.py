"""Running a checked statement on each database (layers 2 and 3 of the guard): a read-only
transaction with a time limit that always ends in ROLLBACK (``execution``), on PostgreSQL as
the owner's query role (``postgres``), on SQLite under an authorizer (``sqlite``).

An :class:`~tablehouse.query.backends.execution.Executor` per
:class:`~tablehouse.core.database.Backend`; only the query service imports this package.
"""
