-- Server metrics: request counts and latencies, pool gauges, ingest counts.
-- Rendered by tablehouse.analytics.store.migrations (see 0001_query_logs.sql for the placeholders).
--
-- ORDER BY (metric_name, timestamp): reads are "this metric over this time range".
-- PARTITION BY month with a TTL, and a deduplication window, as for query_logs.
CREATE TABLE IF NOT EXISTS ${database}.metrics${on_cluster}
(
    metric_name LowCardinality(String),
    value Float64,
    metric_type Enum8('gauge' = 1, 'counter' = 2, 'histogram' = 3),
    tags Map(LowCardinality(String), String),
    timestamp DateTime64(3, 'UTC')
)
ENGINE = ${engine}
PARTITION BY toYYYYMM(timestamp)
ORDER BY (metric_name, timestamp)
TTL toDateTime(timestamp) + INTERVAL ${metrics_ttl_days} DAY
SETTINGS ${dedup_window};
