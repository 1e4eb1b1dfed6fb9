"""Analytics: the query log and metrics, buffered into ClickHouse."""
