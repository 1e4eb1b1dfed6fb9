"""The ClickHouse store: the connection (client.py), the tables events become rows of
(tables.py) and their versioned migrations (migrations.py, ddl/*.sql)."""
