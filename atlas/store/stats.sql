-- Named queries for the exporter's snapshot (atlas.store.sqlite_stats): counters and seeks only.
-- `-- name: x` starts a query; parameters are :named.

-- name: stats_items
SELECT state, kind, n FROM stats_items;

-- name: stats_dlq
SELECT stage, error_class, n FROM stats_dlq WHERE n > 0 ORDER BY n DESC, stage, error_class;

-- name: completed
SELECT coalesce(max(seq), 0) FROM completions;

-- name: stats_contents
SELECT n, bytes FROM stats_contents WHERE id = 1;

-- name: feeds_by_status
-- Subscriptions number in the thousands at most, unlike items: read whole.
SELECT failures > 0, count(*) FROM feeds GROUP BY 1;

-- name: kv_prefix
SELECT value FROM kv WHERE substr(key, 1, :n) = :prefix;

-- name: kv_two
SELECT key, value FROM kv WHERE key IN (:a, :b);
