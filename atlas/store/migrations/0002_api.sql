-- What the HTTP API needs: API keys, idempotent replays, stage timings, the oldest queued item.

-- API keys: only a hash of the secret part is kept; the key itself is shown once at creation.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,              -- comma-separated: ingest, read, admin
    secret_hash  TEXT NOT NULL,
    created_at   REAL NOT NULL,
    revoked_at   REAL,
    last_used_at REAL
);

-- A fingerprint of the request that created an item under an idempotency key: a repeat with a
-- different body is a conflict, not a replay.
ALTER TABLE items ADD COLUMN request_hash TEXT;

-- Seconds each pipeline stage took on the attempt that finished the item (JSON object).
ALTER TABLE items ADD COLUMN timings TEXT;

-- Oldest queued item in O(log n), for backpressure and health.
CREATE INDEX items_queued_created ON items (created_at) WHERE state = 'queued';
