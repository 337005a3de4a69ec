-- Named queries for the exporter's snapshot and operations figures on PostgreSQL
-- (atlas.store.postgres.ops). Counters are delta rows (0001_init.sql): readers sum them.

-- name: snapshot_begin
-- One snapshot for every read below, and no writes.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY;

-- name: stats_items
-- Pairs that emptied are kept as 0, as on SQLite: a state that empties is exported as 0.
SELECT state, kind, sum(n)::bigint AS n FROM stats_items GROUP BY state, kind;

-- name: stats_dlq
SELECT stage, error_class, sum(n)::bigint AS n FROM stats_dlq GROUP BY stage, error_class
HAVING sum(n) > 0 ORDER BY n DESC, stage, error_class;

-- name: oldest_queued
SELECT min(created_at) AS at FROM items WHERE state = 'queued';

-- name: completed
SELECT coalesce(sum(n), 0)::bigint AS n FROM stats_completions;

-- name: stats_contents
SELECT coalesce(sum(n), 0)::bigint AS n, coalesce(sum(bytes), 0)::bigint AS bytes FROM stats_contents;

-- name: feeds_by_status
SELECT failures > 0 AS failing, count(*) AS n FROM feeds GROUP BY 1;

-- name: kv_prefix
SELECT value FROM kv WHERE key LIKE %(prefix)s || '%%';

-- name: kv_two
SELECT key, value FROM kv WHERE key IN (%(a)s, %(b)s);

-- name: database_bytes
SELECT pg_database_size(current_database()) AS n;

-- name: finished_since
SELECT outcome, count(*) AS n FROM completions WHERE at >= %(since)s GROUP BY outcome;
