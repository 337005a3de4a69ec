-- Maintained counters for the exporter's business gauges (issue 6): a scrape must cost the same
-- with 1,000,000 items as with 1,000, so nothing it reads may scan items or contents. Triggers keep
-- the counters in the same transaction as the change they count, whichever code path makes it
-- (enqueue, claim, apply, reaper, DLQ replay and purge, retention).
--
-- Write cost: the item triggers fire only when state or kind changes (UPDATE OF ... WHEN), so a
-- heartbeat costs nothing; a state change costs one extra upsert into a tiny table (bench/exporter.py
-- measures it).

-- Items by (state, kind). Rows that reach 0 stay, so a state that emptied is exported as 0.
CREATE TABLE stats_items (
    state TEXT NOT NULL,
    kind  TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (state, kind)
) WITHOUT ROWID;

-- Dead items by error fingerprint. Errors without a stage or class count under ''.
CREATE TABLE stats_dlq (
    stage       TEXT NOT NULL,
    error_class TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (stage, error_class)
) WITHOUT ROWID;

-- Stored contents: one row (id = 1).
CREATE TABLE stats_contents (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    n     INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);

-- Backfill from what is already stored (one scan, once, at migration time).
INSERT INTO stats_items (state, kind, n) SELECT state, kind, count(*) FROM items GROUP BY state, kind;
INSERT INTO stats_dlq (stage, error_class, n)
SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), count(*)
  FROM items WHERE state = 'dead' GROUP BY 1, 2;
INSERT INTO stats_contents (id, n, bytes) SELECT 1, count(*), coalesce(sum(bytes), 0) FROM contents;

CREATE TRIGGER stats_items_insert AFTER INSERT ON items
BEGIN
    INSERT INTO stats_items (state, kind, n) VALUES (new.state, new.kind, 1)
        ON CONFLICT (state, kind) DO UPDATE SET n = n + 1;
    INSERT INTO stats_dlq (stage, error_class, n)
        SELECT coalesce(new.last_error_stage, ''), coalesce(new.last_error_class, ''), 1
         WHERE new.state = 'dead'
        ON CONFLICT (stage, error_class) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER stats_items_delete AFTER DELETE ON items
BEGIN
    UPDATE stats_items SET n = n - 1 WHERE state = old.state AND kind = old.kind;
    UPDATE stats_dlq SET n = n - 1
     WHERE old.state = 'dead'
       AND stage = coalesce(old.last_error_stage, '') AND error_class = coalesce(old.last_error_class, '');
END;

CREATE TRIGGER stats_items_update AFTER UPDATE OF state, kind ON items
WHEN old.state IS NOT new.state OR old.kind IS NOT new.kind
BEGIN
    UPDATE stats_items SET n = n - 1 WHERE state = old.state AND kind = old.kind;
    INSERT INTO stats_items (state, kind, n) VALUES (new.state, new.kind, 1)
        ON CONFLICT (state, kind) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER stats_dlq_update AFTER UPDATE OF state, last_error_stage, last_error_class ON items
WHEN (old.state = 'dead' OR new.state = 'dead')
 AND (old.state IS NOT new.state
      OR old.last_error_stage IS NOT new.last_error_stage
      OR old.last_error_class IS NOT new.last_error_class)
BEGIN
    UPDATE stats_dlq SET n = n - 1
     WHERE old.state = 'dead'
       AND stage = coalesce(old.last_error_stage, '') AND error_class = coalesce(old.last_error_class, '');
    INSERT INTO stats_dlq (stage, error_class, n)
        SELECT coalesce(new.last_error_stage, ''), coalesce(new.last_error_class, ''), 1
         WHERE new.state = 'dead'
        ON CONFLICT (stage, error_class) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER stats_contents_insert AFTER INSERT ON contents
BEGIN
    UPDATE stats_contents SET n = n + 1, bytes = bytes + new.bytes WHERE id = 1;
END;

CREATE TRIGGER stats_contents_delete AFTER DELETE ON contents
BEGIN
    UPDATE stats_contents SET n = n - 1, bytes = bytes - old.bytes WHERE id = 1;
END;
