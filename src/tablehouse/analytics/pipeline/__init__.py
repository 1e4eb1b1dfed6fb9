"""How events reach ClickHouse: the writer (batches from memory), the spool (on disk while
the store is away), a command's hand-off, and the lifecycle of one process's analytics."""
