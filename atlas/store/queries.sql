-- Named queries for the SQLite store, one per operation, so the PostgreSQL store can be compared
-- query by query. `-- name: x` starts a query; parameters are :named.

-- name: insert_item
-- Positional (the order of SQLiteStore.enqueue's row tuples): the cheapest binding per row.
INSERT INTO items (id, kind, source, idempotency_key, priority, state, payload, metadata,
                   next_attempt_at, trace_context, request_hash, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10, ?11, ?11);

-- name: insert_item_plain
-- insert_item for rows without source, idempotency key, metadata or request hash (the common
-- batch): NULL written in the statement, not bound. Python's sqlite3 binds each None through its
-- adapter lookup, ~0.8 us a value (4 a row: most of a row's binding; ~0.3 since the store
-- registered an adapter for None, atlas.store.sqlite_connection), on the thread that commits for
-- every request. Parameters: sqlite_items.insert_items' projection of an item row; the
-- VALUES row is repeated for a multi-row insert (sqlite_items.insert_rows).
INSERT INTO items (id, kind, source, idempotency_key, priority, state, payload, metadata,
                   next_attempt_at, trace_context, request_hash, created_at, updated_at)
VALUES (?1, ?2, NULL, NULL, ?3, 'queued', ?4, NULL, ?5, ?6, NULL, ?7, ?7);

-- name: leases_in
-- {} is a list of ? placeholders (SQLiteQueue.apply fills it chunk by chunk).
SELECT id, lease_token FROM items WHERE state = 'leased' AND id IN ({});

-- name: content_owners_by_hash_in
SELECT content_hash, item_id FROM contents WHERE content_hash IN ({});

-- name: content_owners_by_url_in
SELECT canonical_url, item_id FROM contents WHERE canonical_url IN ({});

-- name: idempotency_lookup
-- `{}` is replaced by one `?` per key (at most 500 a statement, under SQLite's variable limit).
SELECT idempotency_key, id, request_hash FROM items WHERE idempotency_key IN ({});

-- name: get_item
SELECT * FROM items WHERE id = :id;

-- name: claim
UPDATE items
   SET state = 'leased', lease_owner = :owner, lease_token = :token, lease_until = :until,
       updated_at = :now
 WHERE id IN (SELECT id FROM items
               WHERE state = 'queued' AND next_attempt_at <= :now
               ORDER BY priority DESC, next_attempt_at
               LIMIT :limit)
RETURNING id, kind, source, priority, payload, metadata, attempts, deaths, isolate,
          trace_context, created_at;

-- name: due
-- The claim's choice without the lease (claim_settling: some are settled in this transaction,
-- the rest leased by lease_ids), in claim order, with each row's rowid last; :skip is a JSON
-- array of the rowids this process has handed out and not yet written (settle_handed), which
-- the index walk passes over without reading their rows.
SELECT id, kind, source, priority, payload, metadata, attempts, deaths, isolate,
       trace_context, created_at, rowid
  FROM items
 WHERE state = 'queued' AND next_attempt_at <= :now
   AND rowid NOT IN (SELECT value FROM json_each(:skip))
 ORDER BY priority DESC, next_attempt_at
 LIMIT :limit;

-- name: handed_unchanged
-- Of the handed ids (`{}`: one `?` each), those still queued and unleased: id, then attempts and
-- kind. By id (the unary + keeps the planner off the state and lease indexes, which would walk
-- every queued row).
SELECT id, attempts, kind FROM items WHERE id IN ({}) AND +state = 'queued' AND +lease_token IS NULL;

-- name: settle_handed
-- settle_done for a handed document a worker stored (done) or found a duplicate of, positional:
-- state, content hash, duplicate of, timings, now, id, and the attempts it was handed at.
UPDATE items
   SET state = ?1,
       attempts = attempts + 1,
       next_attempt_at = ?5,
       dead_reason = NULL,
       content_hash = ?2,
       duplicate_of = ?3,
       timings = coalesce(?4, timings),
       done_at = ?5,
       updated_at = ?5,
       counted = 1 - counted
 WHERE id = ?6 AND state = 'queued' AND lease_token IS NULL AND attempts = ?7;

-- name: insert_completion_settled
INSERT INTO completions (item_id, outcome, lease_token, at) VALUES (?1, ?2, NULL, ?3);

-- name: lease_ids
-- `{}` is one `?` per id, after the four of owner, token, until and now.
UPDATE items
   SET state = 'leased', lease_owner = ?, lease_token = ?, lease_until = ?, updated_at = ?
 WHERE state = 'queued' AND id IN ({});

-- name: heartbeat
UPDATE items SET lease_until = :until
 WHERE state = 'leased' AND lease_owner = :owner;

-- name: transition
-- From 'leased' under the lease's token; or from 'queued' with no token (claim_settling: an item
-- settled in the transaction that chose it, never leased).
UPDATE items
   SET state = :state,
       attempts = attempts + :attempts_inc,
       deaths = deaths + :deaths_inc,
       isolate = :isolate,
       next_attempt_at = :next_attempt_at,
       lease_owner = NULL, lease_token = NULL, lease_until = NULL,
       last_error_stage = coalesce(:error_stage, last_error_stage),
       last_error_class = coalesce(:error_class, last_error_class),
       last_error_message = coalesce(:error_message, last_error_message),
       last_error_host = coalesce(:error_host, last_error_host),
       dead_reason = :dead_reason,
       content_hash = coalesce(:content_hash, content_hash),
       duplicate_of = :duplicate_of,
       timings = coalesce(:timings, timings),
       done_at = :done_at,
       updated_at = :now,
       -- flipped when the caller counts the state change itself (migration 0012), else kept
       counted = CASE WHEN :counted THEN 1 - counted ELSE counted END
 WHERE id = :id AND state = :from_state AND lease_token IS :token;

-- name: settle_done
-- transition for a document claim_settling stored (done) or found a duplicate of: from queued,
-- never leased, so its lease columns are NULL already and it records no error; the same row as
-- transition writes, with the columns it would leave unchanged left out (issue 18: each one SET
-- costs, and the lease columns' index is not touched). Counted by the caller (migration 0012).
UPDATE items
   SET state = :state,
       attempts = attempts + 1,
       next_attempt_at = :now,
       dead_reason = NULL,
       content_hash = :content_hash,
       duplicate_of = :duplicate_of,
       timings = coalesce(:timings, timings),
       done_at = :now,
       updated_at = :now,
       counted = 1 - counted
 WHERE id = :id AND state = 'queued' AND lease_token IS NULL;

-- name: insert_attempt
INSERT INTO attempts (item_id, attempt, at, outcome, stage, error_class, message, host)
VALUES (:id, (SELECT attempts FROM items WHERE id = :id) + :attempt_offset, :now, :outcome,
        :error_stage, :error_class, :error_message, :error_host);

-- name: insert_content
-- batched = 1: the full-text index and the counters are written by the two statements below, once
-- for every row of the transaction (migration 0011), not by the per-row triggers. Positional, in
-- the order of sqlite_queue.content_values: a row's tuple is built directly instead of a 13-key
-- dict that TimedConnection projected back to a tuple (building the dict alone cost ~0.4-0.9 us
-- more a row, measured; issue 18).
INSERT INTO contents (item_id, content_hash, content_type, title, text, canonical_url, language,
                      author, published, url, bytes, created_at, batched)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1)
ON CONFLICT (content_hash) DO NOTHING;

-- name: insert_content_plain
-- insert_content for a transaction whose every text has no title, URL, language, author or date
-- (plain-text documents): those NULL in the statement, not bound. Parameters: content_values'
-- item id, hash, content type, text, bytes and time (sqlite_queue.PLAIN_CONTENT).
INSERT INTO contents (item_id, content_hash, content_type, text, bytes, created_at, batched)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
ON CONFLICT (content_hash) DO NOTHING;

-- name: contents_last_seq
-- New rows get a larger seq (INTEGER PRIMARY KEY: max + 1), so `seq > this` is what follows.
SELECT coalesce(max(seq), 0) FROM contents;

-- name: index_batched_contents
INSERT INTO contents_fts (rowid, title, text)
SELECT seq, title, text FROM contents WHERE seq > :after AND batched = 1;

-- name: count_batched_contents
UPDATE stats_contents
   SET n = n + (SELECT count(*) FROM contents WHERE seq > :after AND batched = 1),
       bytes = bytes + (SELECT coalesce(sum(bytes), 0) FROM contents WHERE seq > :after AND batched = 1)
 WHERE id = 1;

-- name: insert_completion
INSERT INTO completions (item_id, outcome, lease_token, at) VALUES (:id, :outcome, :token, :now);

-- name: expired_leases
SELECT id, lease_owner, lease_expiries FROM items
 WHERE state = 'leased' AND lease_until < :now;

-- name: reap_lease
UPDATE items
   SET state = :state, lease_expiries = lease_expiries + 1,
       lease_owner = NULL, lease_token = NULL, lease_until = NULL,
       next_attempt_at = :now, updated_at = :now,
       last_error_stage = 'engine', last_error_class = 'LeaseExpired',
       last_error_message = :message, last_error_host = NULL,
       dead_reason = :dead_reason
 WHERE id = :id AND state = 'leased' AND lease_until < :now;

-- name: release_owner
UPDATE items
   SET state = 'queued', lease_owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = :now
 WHERE state = 'leased' AND lease_owner = :owner;

-- name: item_attempts
SELECT attempt, at, outcome, stage, error_class, message, host
  FROM attempts WHERE item_id = :id ORDER BY rowid;

-- name: get_content
-- The columns PostgreSQL's returns: not the bookkeeping `batched` (migration 0011).
SELECT seq, item_id, content_hash, content_type, title, text, canonical_url, language, bytes,
       created_at, author, published, url
  FROM contents WHERE item_id = :id;

-- name: count_settled_from
-- Items claim_settling moved out of queued, per kind, in the same transaction (migration 0012).
UPDATE stats_items SET n = n - ?2 WHERE state = 'queued' AND kind = ?1;

-- name: count_settled_to
-- ... and into a state, per (state, kind).
INSERT INTO stats_items (state, kind, n) VALUES (?1, ?2, ?3)
ON CONFLICT (state, kind) DO UPDATE SET n = n + excluded.n;

-- name: count_enqueued
-- Items SQLiteStore.enqueue inserted, per kind, in the same transaction (0005_enqueue_stats).
INSERT INTO stats_items (state, kind, n) VALUES ('queued', ?1, ?2)
ON CONFLICT (state, kind) DO UPDATE SET n = n + excluded.n;

-- name: subscribe_feed
-- A `feed` item subscribes its URL when enqueue inserts it (0006_enqueue_feeds).
INSERT INTO feeds (id, url, interval_seconds, next_poll_at, created_at)
VALUES ('f_' || ?1, ?2, ?3, ?4, ?4)
ON CONFLICT (url) DO NOTHING;

-- name: recount_items_zero
-- Rebuilding the item counters from the rows (for rows inserted by hand: tests, benchmarks,
-- repair) is this and recount_items in one transaction. Pairs that emptied stay as 0 rows, as
-- the triggers leave them.
UPDATE stats_items SET n = 0;

-- name: recount_items
INSERT INTO stats_items (state, kind, n) SELECT state, kind, count(*) FROM items GROUP BY state, kind
ON CONFLICT (state, kind) DO UPDATE SET n = excluded.n;

-- name: count_by_state
SELECT state, kind, n FROM stats_items WHERE n > 0;

-- name: kv_get
SELECT value FROM kv WHERE key = :key;

-- name: kv_set
INSERT INTO kv (key, value, updated_at) VALUES (:key, :value, :now)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at;

-- name: kv_delete
DELETE FROM kv WHERE key = :key;

-- name: completions
SELECT item_id, count(*) AS n FROM completions GROUP BY item_id;

-- name: kv_items
SELECT key, value FROM kv WHERE key LIKE :prefix || '%' ORDER BY key;

-- name: kv_prune
DELETE FROM kv WHERE key LIKE :prefix || '%' AND updated_at < :before;

-- name: api_key_insert
INSERT INTO api_keys (id, name, scopes, secret_hash, pepper_id, created_at)
VALUES (:id, :name, :scopes, :secret_hash, :pepper_id, :now);

-- name: api_key_get
SELECT * FROM api_keys WHERE id = :id;

-- name: api_key_list
SELECT id, name, scopes, created_at, revoked_at, last_used_at, pepper_id FROM api_keys ORDER BY created_at;

-- name: api_key_revoke
UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL;

-- name: api_key_touch
UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), :now) WHERE id = :id;

-- name: api_key_rehash
-- Only if the hash is still the one the key was verified against: a concurrent revoke-and-recreate
-- or another API process's re-hash is never overwritten.
UPDATE api_keys SET secret_hash = :new_hash, pepper_id = :pepper_id
 WHERE id = :id AND secret_hash = :old_hash;

-- name: queued_count
SELECT coalesce(sum(n), 0) FROM stats_items WHERE state = 'queued';

-- name: advance_queue_hint
-- Move queue_hint up to the first queued id (or, with none queued, to the newest id: every id
-- inserted later is larger or lowers the hint itself), so the gauge's walk starts near its answer.
-- One statement: no requeue can slip in between the walk and the write.
UPDATE queue_hint SET id = coalesce(
    (SELECT id FROM items WHERE id >= queue_hint.id AND +state = 'queued' ORDER BY id LIMIT 1),
    (SELECT max(id) FROM items),
    '');

-- name: lower_queue_hint
-- An enqueue's smallest new id: normally above the hint already (ids grow with time); below it
-- only after the clock stepped back.
UPDATE queue_hint SET id = :id WHERE id > :id;

-- name: oldest_queued
-- The first queued item in id order, found by walking the primary key from queue_hint (migration
-- 0010: every queued id is >= it), then the smallest created_at among the queued items of that
-- id's millisecond (ids order by acceptance time to the millisecond only). `+state` keeps the
-- planner off items_due, whose order is not the ids'. Within that millisecond it looks at 64
-- queued items at most: a batch accepted in one millisecond can be 40,000 items, and reading them
-- all (~400 ms) every second in the API's sampler took a third of `atlas up`'s CPU while the
-- engine drained one. Past 64, the answer may be late by under a millisecond.
SELECT min(created_at) FROM (
    SELECT i.created_at
      FROM (SELECT id FROM items
             WHERE id >= (SELECT id FROM queue_hint) AND +state = 'queued'
             ORDER BY id LIMIT 1) AS f,
           items AS i
     WHERE i.id >= f.id AND i.id < substr(f.id, 1, 12) || 'g' AND +i.state = 'queued'
     LIMIT 64);

-- name: completions_seq
SELECT coalesce(max(seq), 0) FROM completions;
