-- Resident memory of each Atlas process, sampled by `atlas services` every ATLAS_RSS_SAMPLE_SECONDS,
-- for `atlas-ops monitoring analyze --memory` (issue 13). Bounded: rows older than
-- ATLAS_RSS_RETENTION_DAYS are pruned by the same loop, so at one sample a minute for six
-- processes a week is ~60,000 small rows.
-- A new table and indexes that older releases never read:
-- deploy: backward-compatible
CREATE TABLE rss_samples (
    at        REAL NOT NULL,
    service   TEXT NOT NULL,   -- the pid file's name: atlas-api, atlas-core, ... (children summed in)
    pid       INTEGER NOT NULL,
    rss_bytes INTEGER NOT NULL
);
CREATE INDEX rss_samples_service_at ON rss_samples (service, at);
CREATE INDEX rss_samples_at ON rss_samples (at);

-- `atlas-ops dlq list` and GET /v1/dlq page dead items in id order. With no index on (id) for
-- dead items alone, SQLite walked the primary key over every item to find the dead ones (a
-- whole-table read, found by `atlas-ops system check --database`); this partial index holds only
-- dead items, so a page costs its own rows.
CREATE INDEX items_dead_id ON items (id) WHERE state = 'dead';
