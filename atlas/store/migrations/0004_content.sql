-- The content pipeline (issue 3): page metadata, full-text search, feed subscriptions.

-- contents gets an INTEGER PRIMARY KEY: the FTS index refers to rows by rowid, and VACUUM may
-- renumber the rowids of a table without one. Rebuilt in place (its triggers go with it).
CREATE TABLE contents_new (
    seq           INTEGER PRIMARY KEY,
    item_id       TEXT NOT NULL UNIQUE,
    content_hash  TEXT NOT NULL UNIQUE,
    content_type  TEXT,
    title         TEXT,
    text          TEXT NOT NULL,
    canonical_url TEXT,
    language      TEXT,
    bytes         INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    author        TEXT,
    published     TEXT,                 -- as the page states it
    url           TEXT                  -- the URL the item named
);
INSERT INTO contents_new (item_id, content_hash, content_type, title, text, canonical_url, language,
                          bytes, created_at)
SELECT item_id, content_hash, content_type, title, text, canonical_url, language, bytes, created_at
  FROM contents;
DROP TABLE contents;
ALTER TABLE contents_new RENAME TO contents;
CREATE INDEX contents_canonical_url ON contents (canonical_url) WHERE canonical_url IS NOT NULL;

CREATE TRIGGER stats_contents_insert AFTER INSERT ON contents
BEGIN
    UPDATE stats_contents SET n = n + 1, bytes = bytes + new.bytes WHERE id = 1;
END;

CREATE TRIGGER stats_contents_delete AFTER DELETE ON contents
BEGIN
    UPDATE stats_contents SET n = n - 1, bytes = bytes - old.bytes WHERE id = 1;
END;

-- Full-text index over title and text, kept by triggers; the text itself is read from contents.
CREATE VIRTUAL TABLE contents_fts USING fts5(
    title, text, content = 'contents', content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO contents_fts (contents_fts) VALUES ('rebuild');

CREATE TRIGGER contents_fts_insert AFTER INSERT ON contents
BEGIN
    INSERT INTO contents_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);
END;

CREATE TRIGGER contents_fts_delete AFTER DELETE ON contents
BEGIN
    INSERT INTO contents_fts (contents_fts, rowid, title, text) VALUES ('delete', old.seq, old.title, old.text);
END;

CREATE TRIGGER contents_fts_update AFTER UPDATE OF title, text ON contents
BEGIN
    INSERT INTO contents_fts (contents_fts, rowid, title, text) VALUES ('delete', old.seq, old.title, old.text);
    INSERT INTO contents_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);
END;

-- What the last fetch of a URL said about its content, for conditional requests: the next url item
-- for the same URL is fetched with If-None-Match / If-Modified-Since, and a 304 makes it a
-- duplicate of the item holding the content. Forgotten with that content.
CREATE TABLE fetch_validators (
    url           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    item_id       TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    updated_at    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX fetch_validators_hash ON fetch_validators (content_hash);

CREATE TRIGGER fetch_validators_forget AFTER DELETE ON contents
BEGIN
    DELETE FROM fetch_validators WHERE content_hash = old.content_hash;
END;

-- Feed subscriptions. last_status: ok | not_modified | error | new (never polled).
CREATE TABLE feeds (
    id               TEXT PRIMARY KEY,
    url              TEXT NOT NULL UNIQUE,
    title            TEXT,
    interval_seconds REAL,                       -- NULL: ATLAS_FEED_POLL_INTERVAL_SECONDS
    etag             TEXT,
    last_modified    TEXT,
    next_poll_at     REAL NOT NULL,
    last_polled_at   REAL,
    last_status      TEXT NOT NULL DEFAULT 'new',
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,   -- failed polls in a row
    entries_seen     INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL
);
CREATE INDEX feeds_due ON feeds (next_poll_at);

-- Entries a feed has produced, so a poll enqueues only new ones (key: entry id, else link).
CREATE TABLE feed_entries (
    feed_id   TEXT NOT NULL,
    entry_key TEXT NOT NULL,
    item_id   TEXT,
    seen_at   REAL NOT NULL,
    PRIMARY KEY (feed_id, entry_key)
) WITHOUT ROWID;

-- A `feed` item subscribes its URL when it is accepted, whichever path accepted it.
CREATE TRIGGER feeds_subscribe AFTER INSERT ON items WHEN new.kind = 'feed'
BEGIN
    INSERT INTO feeds (id, url, interval_seconds, next_poll_at, created_at)
    VALUES ('f_' || new.id, json_extract(new.payload, '$.url'),
            json_extract(new.payload, '$.poll_interval_seconds'),
            new.created_at, new.created_at)
    ON CONFLICT (url) DO NOTHING;
END;
