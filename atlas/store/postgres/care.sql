-- Named queries for operations on PostgreSQL (atlas.store.postgres.ops, .care): memory samples and
-- the facts `atlas-ops system check --database` reports.

-- name: rss_insert
INSERT INTO rss_samples (at, service, pid, rss_bytes)
VALUES (%(at)s, %(service)s, %(pid)s, %(rss_bytes)s);

-- name: rss_prune
-- Older than the retention, or past the newest %(max_rows)s (seq grows with each insert).
DELETE FROM rss_samples
 WHERE at < %(before)s OR seq <= (SELECT coalesce(max(seq), 0) FROM rss_samples) - %(max_rows)s;

-- name: rss_history
SELECT at, service, pid, rss_bytes FROM rss_samples WHERE at >= %(since)s ORDER BY service, at;

-- name: relations
-- Every table of this schema with its bytes (heap, indexes, TOAST), live and dead rows, and when
-- (auto)vacuum last ran, from the statistics collector (estimates, refreshed by ANALYZE/VACUUM).
SELECT s.relname AS name,
       pg_table_size(s.relid) AS table_bytes,
       pg_indexes_size(s.relid) AS index_bytes,
       pg_total_relation_size(s.relid) AS total_bytes,
       s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows,
       extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum))::double precision AS vacuumed_at,
       extract(epoch FROM greatest(s.last_analyze, s.last_autoanalyze))::double precision AS analyzed_at
  FROM pg_stat_user_tables s
 WHERE s.schemaname = current_schema()
 ORDER BY s.relname;

-- name: total_bytes
SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint AS n
  FROM pg_stat_user_tables WHERE schemaname = current_schema();

-- name: block_size
SELECT current_setting('block_size')::int AS n;

-- name: amcheck_installed
SELECT count(*) AS n FROM pg_extension WHERE extname = 'amcheck';

-- name: btree_indexes
-- Every B-tree index of this schema's tables, with whether the server considers it valid and ready
-- (a failed CREATE INDEX CONCURRENTLY leaves one invalid: the planner never uses it).
SELECT c.oid AS oid, c.relname AS name, i.indisvalid AND i.indisready AS valid
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = current_schema() AND a.amname = 'btree'
 ORDER BY c.relname;

-- name: bt_index_check
SELECT bt_index_check(%(oid)s::regclass);
