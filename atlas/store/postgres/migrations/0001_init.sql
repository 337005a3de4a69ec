-- The PostgreSQL schema, equal in meaning to SQLite migrations 0001-0008 (atlas/store/migrations).
-- Times are Unix seconds (double precision) as on SQLite, so records and cursors are the same.
-- JSON columns stay text: the exact text SQLite stores (integers over 64 bits, escaped lone
-- surrogates) is not all valid jsonb. Ids collate "C": keyset cursors compare them bytewise.

CREATE TABLE items (
    id                  text COLLATE "C" PRIMARY KEY,
    kind                text NOT NULL,
    source              text,
    idempotency_key     text,
    priority            integer NOT NULL DEFAULT 0,
    state               text NOT NULL,
    payload             text NOT NULL,
    metadata            text,
    attempts            integer NOT NULL DEFAULT 0,
    deaths              integer NOT NULL DEFAULT 0,
    lease_expiries      integer NOT NULL DEFAULT 0,
    isolate             integer NOT NULL DEFAULT 0,
    next_attempt_at     double precision NOT NULL,
    lease_owner         text,
    lease_token         text,
    lease_until         double precision,
    last_error_stage    text,
    last_error_class    text,
    last_error_message  text,
    last_error_host     text,
    dead_reason         text,
    content_hash        text,
    duplicate_of        text,
    trace_context       text,
    created_at          double precision NOT NULL,
    updated_at          double precision NOT NULL,
    done_at             double precision,
    request_hash        text,
    timings             text
);
CREATE UNIQUE INDEX items_idempotency_key ON items (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX items_due ON items (priority DESC, next_attempt_at) WHERE state = 'queued';
CREATE INDEX items_leased ON items (lease_until) WHERE state = 'leased';
CREATE INDEX items_lease_owner ON items (lease_owner) WHERE state = 'leased';
CREATE INDEX items_dead ON items (updated_at) WHERE state = 'dead';
CREATE INDEX items_queued_created ON items (created_at) WHERE state = 'queued';

-- seq orders an item's history (SQLite uses the rowid).
CREATE TABLE attempts (
    seq         bigserial PRIMARY KEY,
    item_id     text COLLATE "C" NOT NULL,
    attempt     integer NOT NULL,
    at          double precision NOT NULL,
    outcome     text NOT NULL,
    stage       text,
    error_class text,
    message     text,
    host        text
);
CREATE INDEX attempts_item ON attempts (item_id);

-- tsv: title weighted A, text B; the 'simple' configuration neither stems nor drops stop words,
-- like SQLite's unicode61 tokenizer (which also folds diacritics; 'simple' does not).
CREATE TABLE contents (
    seq           bigserial PRIMARY KEY,
    item_id       text COLLATE "C" NOT NULL UNIQUE,
    content_hash  text NOT NULL UNIQUE,
    content_type  text,
    title         text,
    text          text NOT NULL,
    canonical_url text,
    language      text,
    bytes         bigint NOT NULL,
    created_at    double precision NOT NULL,
    author        text,
    published     text,
    url           text,
    tsv           tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(title, '')), 'A')
        || setweight(to_tsvector('simple', text), 'B')
    ) STORED
);
CREATE INDEX contents_canonical_url ON contents (canonical_url) WHERE canonical_url IS NOT NULL;
CREATE INDEX contents_tsv ON contents USING gin (tsv);

CREATE TABLE completions (
    seq         bigserial PRIMARY KEY,
    item_id     text COLLATE "C" NOT NULL,
    outcome     text NOT NULL,
    lease_token text,
    at          double precision NOT NULL
);
CREATE INDEX completions_item ON completions (item_id);

CREATE TABLE kv (
    key        text COLLATE "C" PRIMARY KEY,
    value      text NOT NULL,
    updated_at double precision NOT NULL
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    scopes       text NOT NULL,
    secret_hash  text NOT NULL,
    created_at   double precision NOT NULL,
    revoked_at   double precision,
    last_used_at double precision,
    pepper_id    text
);

CREATE TABLE fetch_validators (
    url           text PRIMARY KEY,
    etag          text,
    last_modified text,
    item_id       text NOT NULL,
    content_hash  text NOT NULL,
    updated_at    double precision NOT NULL
);
CREATE INDEX fetch_validators_hash ON fetch_validators (content_hash);

CREATE TABLE feeds (
    id               text COLLATE "C" PRIMARY KEY,
    url              text NOT NULL UNIQUE,
    title            text,
    interval_seconds double precision,
    etag             text,
    last_modified    text,
    next_poll_at     double precision NOT NULL,
    last_polled_at   double precision,
    last_status      text NOT NULL DEFAULT 'new',
    last_error       text,
    failures         integer NOT NULL DEFAULT 0,
    entries_seen     integer NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL
);
CREATE INDEX feeds_due ON feeds (next_poll_at);

CREATE TABLE feed_entries (
    feed_id   text NOT NULL,
    entry_key text NOT NULL,
    item_id   text,
    seen_at   double precision NOT NULL,
    PRIMARY KEY (feed_id, entry_key)
);

-- Kept counters for the exporter (as SQLite 0003), but as append-only DELTA rows: a counter row
-- updated in place by every transition would be locked from each transition until its commit, so
-- engines on many hosts would queue on it (and could deadlock on two of them). Readers sum the
-- rows; PostgresStore.compact_counters folds them back to one row per key now and then.
CREATE TABLE stats_items (state text NOT NULL, kind text NOT NULL, n bigint NOT NULL);
CREATE INDEX stats_items_key ON stats_items (state, kind);
CREATE TABLE stats_dlq (stage text NOT NULL, error_class text NOT NULL, n bigint NOT NULL);
CREATE INDEX stats_dlq_key ON stats_dlq (stage, error_class);
CREATE TABLE stats_contents (n bigint NOT NULL, bytes bigint NOT NULL);

-- Statement-level triggers with transition tables: one insert per statement, whatever its size,
-- and nothing when a statement changes no state (a heartbeat).
CREATE FUNCTION atlas_count_items_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_items (state, kind, n)
    SELECT state, kind, count(*) FROM new_rows GROUP BY state, kind;
    INSERT INTO stats_dlq (stage, error_class, n)
    SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), count(*)
      FROM new_rows WHERE state = 'dead' GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE FUNCTION atlas_count_items_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_items (state, kind, n)
    SELECT state, kind, -count(*) FROM old_rows GROUP BY state, kind;
    INSERT INTO stats_dlq (stage, error_class, n)
    SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), -count(*)
      FROM old_rows WHERE state = 'dead' GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE FUNCTION atlas_count_items_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_items (state, kind, n)
    SELECT state, kind, sum(d) FROM (
        SELECT state, kind, 1 AS d FROM new_rows
        UNION ALL SELECT state, kind, -1 FROM old_rows
    ) x GROUP BY state, kind HAVING sum(d) <> 0;
    INSERT INTO stats_dlq (stage, error_class, n)
    SELECT stage, error_class, sum(d) FROM (
        SELECT coalesce(last_error_stage, '') AS stage, coalesce(last_error_class, '') AS error_class, 1 AS d
          FROM new_rows WHERE state = 'dead'
        UNION ALL
        SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), -1
          FROM old_rows WHERE state = 'dead'
    ) x GROUP BY stage, error_class HAVING sum(d) <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_items_insert AFTER INSERT ON items
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION atlas_count_items_insert();
CREATE TRIGGER stats_items_delete AFTER DELETE ON items
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION atlas_count_items_delete();
CREATE TRIGGER stats_items_update AFTER UPDATE ON items
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION atlas_count_items_update();

CREATE FUNCTION atlas_count_contents_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_contents (n, bytes) SELECT count(*), coalesce(sum(bytes), 0) FROM new_rows;
    RETURN NULL;
END $$;

CREATE FUNCTION atlas_count_contents_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_contents (n, bytes) SELECT -count(*), -coalesce(sum(bytes), 0) FROM old_rows;
    DELETE FROM fetch_validators WHERE content_hash IN (SELECT content_hash FROM old_rows);
    RETURN NULL;
END $$;

CREATE TRIGGER stats_contents_insert AFTER INSERT ON contents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION atlas_count_contents_insert();
CREATE TRIGGER stats_contents_delete AFTER DELETE ON contents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION atlas_count_contents_delete();
