-- Where each query was sent from (`source`: 'api', 'cli'; later 'mcp'), and its execution
-- time in microseconds: whole milliseconds logged most queries of a small dataset as 0, so
-- every percentile of the summary read 0. `execution_time_ms` stays, as the spec has it.
-- Rows logged before this migration read as 'api' (the only source then) and as their
-- milliseconds times 1000: ClickHouse computes a DEFAULT when it reads a part written
-- before the column existed, so old rows keep summarising in whole milliseconds.
-- Rendered by tablehouse.analytics.store.migrations (see 0001_query_logs.sql for the placeholders).
ALTER TABLE ${database}.query_logs${on_cluster}
    ADD COLUMN IF NOT EXISTS execution_time_us UInt64 DEFAULT toUInt64(execution_time_ms) * 1000,
    ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'api';
