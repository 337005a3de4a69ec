-- Named queries for operations (atlas.store.sqlite_ops): RSS samples, business figures, upkeep.
-- `-- name: x` starts a query; parameters are :named.

-- name: rss_insert
INSERT INTO rss_samples (at, service, pid, rss_bytes) VALUES (:at, :service, :pid, :rss_bytes);

-- name: rss_prune
-- Older than the retention, and past the newest :max_rows whatever the settings (rowids grow with
-- each insert, so both are range deletes).
DELETE FROM rss_samples
 WHERE at < :before OR rowid <= (SELECT coalesce(max(rowid), 0) FROM rss_samples) - :max_rows;

-- name: rss_history
SELECT at, service, pid, rss_bytes FROM rss_samples WHERE at >= :since ORDER BY service, at;

-- name: completions_bounds
SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM completions;

-- name: completion_at_or_after
-- A rowid seek: the first completion from `seq` on, and when it happened.
SELECT seq, at FROM completions WHERE seq >= :seq ORDER BY seq LIMIT 1;

-- name: finished_from
-- Final transitions (done, duplicate, dead) from `seq` on within the window: a rowid range, so the
-- cost is the window's rows, not the table's.
SELECT outcome, count(*) AS n FROM completions WHERE seq >= :seq AND at >= :since GROUP BY outcome;

-- name: page_count
PRAGMA page_count;

-- name: freelist_count
PRAGMA freelist_count;

-- name: page_size
PRAGMA page_size;

-- name: partial_indexes
-- Indexes with a WHERE clause: walking one reads only the rows it covers (items_due: queued items).
SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %';
