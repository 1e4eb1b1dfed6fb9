-- One row per SQL query run through Tablehouse (SPEC: "Query log and analytics").
-- Rendered by tablehouse.analytics.store.migrations: ${database}, ${on_cluster}, ${engine} and the TTL
-- come from settings. Every statement must stay rerunnable (IF NOT EXISTS).
--
-- ORDER BY (user_id, timestamp, query_id): a user's history over a time range is one
--   contiguous range of the primary key; query_id makes the sort key total.
-- PARTITION BY month: TTL and retention drop whole old parts instead of rewriting them.
-- The deduplication window lets a writer resend a batch with the same
--   insert_deduplication_token without the rows being counted twice.
CREATE TABLE IF NOT EXISTS ${database}.query_logs${on_cluster}
(
    query_id UUID,
    user_id UUID,
    query_text String,
    status LowCardinality(String),
    error Nullable(String),
    execution_time_ms UInt32,
    rows_read UInt64,
    bytes_read UInt64,
    timestamp DateTime64(3, 'UTC')
)
ENGINE = ${engine}
PARTITION BY toYYYYMM(timestamp)
ORDER BY (user_id, timestamp, query_id)
TTL toDateTime(timestamp) + INTERVAL ${query_log_ttl_days} DAY
SETTINGS ${dedup_window};
