-- Named queries for the exporter's snapshot (atlas.store.sqlite_stats): counters and seeks only.
-- `-- name: x` starts a query; parameters are :named.

-- name: stats_items
SELECT state, kind, n FROM stats_items;

-- name: stats_dlq
SELECT stage, error_class, n FROM stats_dlq WHERE n > 0 ORDER BY n DESC, stage, error_class;

-- name: oldest_queued
-- The same query as queries.sql oldest_queued (the API's backpressure).
-- The first queued item in id order, found by walking the primary key from queue_hint (migration
-- 0010: every queued id is >= it), then the smallest created_at among the queued items of that
-- id's millisecond (ids order by acceptance time to the millisecond only). `+state` keeps the
-- planner off items_due, whose order is not the ids'.
SELECT min(i.created_at)
  FROM (SELECT id FROM items
         WHERE id >= (SELECT id FROM queue_hint) AND +state = 'queued'
         ORDER BY id LIMIT 1) AS f,
       items AS i
 WHERE i.id >= f.id AND i.id < substr(f.id, 1, 12) || 'g' AND +i.state = 'queued';

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
