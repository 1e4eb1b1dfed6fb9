-- The API key each query was sent with (the nil UUID for a login session), so a key
-- restricted to some datasets is shown only the queries it made itself (docs/api.md, "Query
-- history"). Rows logged before this migration read as the nil UUID: made by a session.
-- Rendered by tablehouse.analytics.store.migrations (see 0001_query_logs.sql for the placeholders).
ALTER TABLE ${database}.query_logs${on_cluster}
    ADD COLUMN IF NOT EXISTS api_key_id UUID;
