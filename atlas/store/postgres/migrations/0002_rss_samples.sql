-- Memory samples for `atlas-ops monitoring analyze --memory` (as SQLite migration 0009), bounded by
-- age and row count on every insert (PgOpsStore.rss_record). seq grows with each insert, so the
-- row bound is a range delete. IF NOT EXISTS: a restore of an older dump with --clean leaves the
-- tables it does not name in place, and this migration then runs again over them.
CREATE TABLE IF NOT EXISTS rss_samples (
    seq       bigserial PRIMARY KEY,
    at        double precision NOT NULL,
    service   text NOT NULL,
    pid       integer NOT NULL,
    rss_bytes bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS rss_samples_service_at ON rss_samples (service, at);
CREATE INDEX IF NOT EXISTS rss_samples_at ON rss_samples (at);

-- Dead items in id order (`atlas-ops dlq list`, GET /v1/dlq), as SQLite migration 0009: without it
-- a page walks the primary key over every item (`system check --database` shows the plan).
CREATE INDEX IF NOT EXISTS items_dead_id ON items (id) WHERE state = 'dead';
