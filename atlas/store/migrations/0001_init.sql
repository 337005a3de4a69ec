-- Items: one row per accepted item, whatever its state. Times are Unix seconds (REAL).
CREATE TABLE items (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    source              TEXT,
    idempotency_key     TEXT,
    priority            INTEGER NOT NULL DEFAULT 0,
    state               TEXT NOT NULL,
    payload             TEXT NOT NULL,          -- JSON: what the producer handed in
    metadata            TEXT,                   -- JSON: producer's metadata, passed through
    attempts            INTEGER NOT NULL DEFAULT 0,  -- finished attempts (success, failure, death)
    deaths              INTEGER NOT NULL DEFAULT 0,  -- attempts that killed or hung their worker
    lease_expiries      INTEGER NOT NULL DEFAULT 0,  -- leases that ran out (engine crashed)
    isolate             INTEGER NOT NULL DEFAULT 0,  -- run alone in a worker (suspected poison)
    next_attempt_at     REAL NOT NULL,
    lease_owner         TEXT,
    lease_token         TEXT,
    lease_until         REAL,
    last_error_stage    TEXT,
    last_error_class    TEXT,
    last_error_message  TEXT,
    last_error_host     TEXT,
    dead_reason         TEXT,                   -- max_attempts | permanent | quarantined | lease_expired
    content_hash        TEXT,
    duplicate_of        TEXT,
    trace_context       TEXT,                   -- W3C traceparent of the request that created it
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    done_at             REAL
);
CREATE UNIQUE INDEX items_idempotency_key ON items (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX items_due ON items (priority DESC, next_attempt_at) WHERE state = 'queued';
CREATE INDEX items_leased ON items (lease_until) WHERE state = 'leased';
CREATE INDEX items_dead ON items (updated_at) WHERE state = 'dead';

-- Every attempt that did not succeed, oldest first: the DLQ's error history.
CREATE TABLE attempts (
    item_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          REAL NOT NULL,
    outcome     TEXT NOT NULL,                  -- retry | dead | died | timeout | lease_expired
    stage       TEXT,
    error_class TEXT,
    message     TEXT,
    host        TEXT
);
CREATE INDEX attempts_item ON attempts (item_id);

-- Stored results. The unique content hash is what makes de-duplication atomic.
CREATE TABLE contents (
    item_id       TEXT PRIMARY KEY,
    content_hash  TEXT NOT NULL UNIQUE,
    content_type  TEXT,
    title         TEXT,
    text          TEXT NOT NULL,
    canonical_url TEXT,
    language      TEXT,
    bytes         INTEGER NOT NULL,
    created_at    REAL NOT NULL
);

-- Journal of final transitions (done, duplicate, dead), written in the same transaction as the
-- transition itself: one row per item that reached a final state, countable by tests and exporters.
CREATE TABLE completions (
    seq         INTEGER PRIMARY KEY,
    item_id     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    lease_token TEXT,
    at          REAL NOT NULL
);
CREATE INDEX completions_item ON completions (item_id);

-- Small shared state every process sees (maintenance mode, heartbeats).
CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
