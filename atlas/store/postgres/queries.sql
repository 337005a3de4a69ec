-- Named queries for the PostgreSQL store, one per operation, named as in atlas/store/queries.sql
-- so the two backends can be compared query by query. Parameters are %(name)s (psycopg); arrays
-- are %(name)b, sent in binary: psycopg escapes each element of a text-format array in Python
-- (~38 µs for a 1 KB text, where binary takes ~1 µs), and the engine's supervisor waits on that.

-- name: insert_items
-- One statement per batch (arrays, not one row per round trip). A key another transaction
-- inserted meanwhile is skipped here and looked up afterwards: no unique violation, one item.
INSERT INTO items (id, kind, source, idempotency_key, priority, state, payload, metadata,
                   next_attempt_at, trace_context, request_hash, created_at, updated_at)
SELECT id, kind, source, ikey, priority, 'queued', payload, metadata, due, trace, rhash,
       accepted, accepted
  FROM unnest(%(ids)b::text[], %(kinds)b::text[], %(sources)b::text[], %(keys)b::text[],
              %(priorities)b::int[], %(payloads)b::text[], %(metadatas)b::text[],
              %(dues)b::float8[], %(traces)b::text[], %(rhashes)b::text[], %(nows)b::float8[])
       AS r (id, kind, source, ikey, priority, payload, metadata, due, trace, rhash, accepted)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: items_by_key
SELECT idempotency_key, id, request_hash FROM items WHERE idempotency_key = ANY(%(keys)b);

-- name: subscribe_feed
INSERT INTO feeds (id, url, interval_seconds, next_poll_at, created_at)
VALUES ('f_' || %(id)s, %(url)s, %(interval)s, %(now)s, %(now)s)
ON CONFLICT (url) DO NOTHING;

-- name: copy_items
-- Key-less batches (atlas.store.postgres.store): item_row's columns in its order (the acceptance
-- time feeding created_at), then the state and updated_at. Binary: the client formats a row in
-- a third of the text format's time (no escaping of the payload, no float to decimal), and the
-- API process's CPU is what a batch request waits on (COPY_TYPES names the columns' types).
COPY items (id, kind, source, idempotency_key, priority, payload, metadata, next_attempt_at,
            trace_context, request_hash, created_at, state, updated_at) FROM STDIN (FORMAT BINARY);

-- name: notify
-- Delivered at commit, once per transaction however many items: wakes idle engines (LISTEN).
SELECT pg_notify('atlas_items', '');

-- name: get_item
SELECT * FROM items WHERE id = %(id)s;

-- name: claim
-- SKIP LOCKED: engines on other hosts claim past the rows this one is taking, never waiting.
-- MATERIALIZED: the pick runs once, so a claim never leases more than its limit.
WITH picked AS MATERIALIZED (
    SELECT id FROM items
     WHERE state = 'queued' AND next_attempt_at <= %(now)s
     ORDER BY priority DESC, next_attempt_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE items AS i
   SET state = 'leased', lease_owner = %(owner)s, lease_token = %(token)s, lease_until = %(until)s,
       updated_at = %(now)s
  FROM picked
 WHERE i.id = picked.id
RETURNING i.id, i.kind, i.source, i.priority, i.payload, i.metadata, i.attempts, i.deaths, i.isolate,
          i.trace_context, i.created_at, i.next_attempt_at;

-- name: due_locked
-- claim's pick, locked and returned as it is (claim_settling: some are settled in this
-- transaction, the rest leased by lease_ids).
-- skip: what this process handed out and has not settled yet (atlas.engine.handoff).
SELECT id, kind, source, priority, payload, metadata, attempts, deaths, isolate, trace_context,
       created_at, next_attempt_at
  FROM items
 WHERE state = 'queued' AND next_attempt_at <= %(now)s AND NOT (id = ANY(%(skip)b::text[]))
 ORDER BY priority DESC, next_attempt_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- name: lock_handed
-- settle_handed: the handed rows still queued and unleased, locked in id order, with the attempts
-- to compare with those they were handed at.
SELECT id, attempts FROM items
 WHERE id = ANY(%(ids)b::text[]) AND state = 'queued' AND lease_token IS NULL
 ORDER BY id FOR UPDATE;

-- name: lease_ids
UPDATE items
   SET state = 'leased', lease_owner = %(owner)s, lease_token = %(token)s, lease_until = %(until)s,
       updated_at = %(now)s
 WHERE id = ANY(%(ids)b::text[]);

-- name: claim_in_due_order
-- A claim's pick must walk items_due, which yields rows in claim order, and stop at its limit.
-- The planner's statistics lag a burst of enqueues: after one into a table of done items they
-- said almost nothing was queued, and on that estimate the pick took the smaller
-- items_queued_created and sorted every queued row, payloads and all (measured: 40-130 ms a claim
-- on 20,000 queued documents, the sort spilled to disk, against 1 ms walking items_due). Without
-- sorts the ordered index is the plan left. SET LOCAL: for the claim's transaction only, whose
-- other statements reach rows by key and sort nothing but their own few rows.
SELECT set_config('enable_sort', 'off', true);

-- name: commit_without_flush
-- A claim need not survive a server crash: if its commit record is lost, the items are simply
-- still queued, and the engine that took them finds its lease gone when it applies (lock_leases)
-- and discards the results; any later commit that is waited for (an apply's) flushes the WAL up
-- to it anyway. So claims skip waiting for their WAL flush (a few ms a claim on this disk).
-- Other sessions see the commit at once, as any commit: leases and SKIP LOCKED are unchanged.
SELECT set_config('synchronous_commit', 'off', true);

-- name: heartbeat
UPDATE items SET lease_until = %(until)s WHERE state = 'leased' AND lease_owner = %(owner)s;

-- name: lock_leases
-- Locked in id order, so two transactions touching the same items cannot deadlock.
SELECT id, lease_token FROM items
 WHERE state = 'leased' AND id = ANY(%(ids)b) ORDER BY id FOR UPDATE;

-- name: content_owner_by_hash
SELECT item_id FROM contents WHERE content_hash = %(hash)s;

-- name: content_owner_by_url
SELECT item_id FROM contents WHERE canonical_url = %(url)s ORDER BY seq LIMIT 1;

-- name: lock_urls
-- Serialises the check-then-insert of each canonical URL across transactions (it is not unique).
-- The URLs come sorted and unnest yields them in the array's order, so two batches take their
-- common locks in the same order (no deadlock).
SELECT pg_advisory_xact_lock(hashtextextended(u, 17)) FROM unnest(%(urls)b::text[]) AS u;

-- name: content_owners_by_hash
SELECT content_hash AS key, item_id FROM contents WHERE content_hash = ANY(%(keys)b::text[]);

-- name: content_owners_by_url
-- The first item (lowest seq) stored under each URL, as content_owner_by_url picks.
SELECT DISTINCT ON (canonical_url) canonical_url AS key, item_id
  FROM contents WHERE canonical_url = ANY(%(keys)b::text[])
 ORDER BY canonical_url, seq;

-- name: insert_attempt
INSERT INTO attempts (item_id, attempt, at, outcome, stage, error_class, message, host)
VALUES (%(id)s, (SELECT attempts FROM items WHERE id = %(id)s) + %(attempt_offset)s, %(now)s, %(outcome)s,
        %(error_stage)s, %(error_class)s, %(error_message)s, %(error_host)s);

-- name: insert_completion
INSERT INTO completions (item_id, outcome, lease_token, at) VALUES (%(id)s, %(outcome)s, %(token)s, %(now)s);

-- name: transition_batch
-- One statement per batch, not one per item (issue 18): the statement triggers that keep the
-- counters (0001_init.sql) then fire once per batch, and the server plans once. Parameters are
-- one array per column of `transition`; the items were locked (lock_leases) and their tokens
-- checked, and an item appears once per batch (apply_transitions), so each row joins one item.
-- From 'leased' under the lease's token, or from 'queued' with none (claim_settling: chosen and
-- locked by due_locked in this transaction, never leased).
UPDATE items AS i
   SET state = r.state,
       attempts = i.attempts + r.attempts_inc,
       deaths = i.deaths + r.deaths_inc,
       isolate = r.isolate,
       next_attempt_at = r.next_attempt_at,
       lease_owner = NULL, lease_token = NULL, lease_until = NULL,
       last_error_stage = coalesce(r.error_stage, i.last_error_stage),
       last_error_class = coalesce(r.error_class, i.last_error_class),
       last_error_message = coalesce(r.error_message, i.last_error_message),
       last_error_host = coalesce(r.error_host, i.last_error_host),
       dead_reason = r.dead_reason,
       content_hash = coalesce(r.content_hash, i.content_hash),
       duplicate_of = r.duplicate_of,
       timings = coalesce(r.timings, i.timings),
       done_at = r.done_at,
       updated_at = %(now)s
  FROM unnest(%(id)b::text[], %(token)b::text[], %(from_state)b::text[], %(state)b::text[],
              %(attempts_inc)b::int[], %(deaths_inc)b::int[], %(isolate)b::int[],
              %(next_attempt_at)b::float8[], %(error_stage)b::text[], %(error_class)b::text[],
              %(error_message)b::text[], %(error_host)b::text[], %(dead_reason)b::text[],
              %(content_hash)b::text[], %(duplicate_of)b::text[], %(timings)b::text[],
              %(done_at)b::float8[])
       AS r (id, token, from_state, state, attempts_inc, deaths_inc, isolate, next_attempt_at,
             error_stage, error_class, error_message, error_host, dead_reason, content_hash,
             duplicate_of, timings, done_at)
 WHERE i.id = r.id AND i.state = r.from_state AND i.lease_token IS NOT DISTINCT FROM r.token;

-- name: insert_attempt_batch
-- insert_attempt for a batch, after transition_batch (the attempt number is the item's updated
-- count); in the batch's order, as one statement per row inserted them.
INSERT INTO attempts (item_id, attempt, at, outcome, stage, error_class, message, host)
SELECT r.id, i.attempts, %(now)s, r.outcome, r.error_stage, r.error_class, r.error_message, r.error_host
  FROM unnest(%(id)b::text[], %(outcome)b::text[], %(error_stage)b::text[], %(error_class)b::text[],
              %(error_message)b::text[], %(error_host)b::text[]) WITH ORDINALITY
       AS r (id, outcome, error_stage, error_class, error_message, error_host, ord)
  JOIN items AS i ON i.id = r.id
 ORDER BY r.ord;

-- name: insert_completion_batch
INSERT INTO completions (item_id, outcome, lease_token, at)
SELECT r.id, r.outcome, r.token, %(now)s
  FROM unnest(%(id)b::text[], %(outcome)b::text[], %(token)b::text[]) WITH ORDINALITY
       AS r (id, outcome, token, ord)
 ORDER BY r.ord;

-- name: insert_content_batch
-- insert_content for a batch in one statement, in the order given (content hash order: see
-- atlas.store.postgres.apply). RETURNING leaves out the texts another transaction stored first.
INSERT INTO contents (item_id, content_hash, content_type, title, text, canonical_url, language,
                      author, published, url, bytes, tsv, created_at)
SELECT r.id, r.content_hash, r.content_type, r.title, r.text, r.canonical_url, r.language,
       r.author, r.published, r.url, r.bytes, r.tsv, %(now)s
  FROM unnest(%(id)b::text[], %(content_hash)b::text[], %(content_type)b::text[], %(title)b::text[],
              %(text)b::text[], %(canonical_url)b::text[], %(language)b::text[], %(author)b::text[],
              %(published)b::text[], %(url)b::text[], %(bytes)b::int8[], %(tsv)b::tsvector[])
       WITH ORDINALITY
       AS r (id, content_hash, content_type, title, text, canonical_url, language, author,
             published, url, bytes, tsv, ord)
 ORDER BY r.ord
ON CONFLICT (content_hash) DO NOTHING
RETURNING item_id;

-- name: expired_leases
SELECT id, lease_owner, lease_expiries FROM items
 WHERE state = 'leased' AND lease_until < %(now)s
 ORDER BY id
   FOR UPDATE SKIP LOCKED;

-- name: reap_lease
UPDATE items
   SET state = %(state)s, lease_expiries = lease_expiries + 1,
       lease_owner = NULL, lease_token = NULL, lease_until = NULL,
       next_attempt_at = %(now)s, updated_at = %(now)s,
       last_error_stage = 'engine', last_error_class = 'LeaseExpired',
       last_error_message = %(message)s, last_error_host = NULL,
       dead_reason = %(dead_reason)s
 WHERE id = %(id)s AND state = 'leased' AND lease_until < %(now)s;

-- name: release_owner
UPDATE items
   SET state = 'queued', lease_owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = %(now)s
 WHERE state = 'leased' AND lease_owner = %(owner)s;

-- name: item_attempts
SELECT attempt, at, outcome, stage, error_class, message, host
  FROM attempts WHERE item_id = %(id)s ORDER BY seq;

-- name: get_content
SELECT seq, item_id, content_hash, content_type, title, text, canonical_url, language, bytes,
       created_at, author, published, url
  FROM contents WHERE item_id = %(id)s;

-- name: count_by_state
SELECT state, kind, sum(n) AS n FROM stats_items GROUP BY state, kind HAVING sum(n) > 0;

-- name: compact_items
WITH gone AS (DELETE FROM stats_items RETURNING state, kind, n)
INSERT INTO stats_items (state, kind, n) SELECT state, kind, sum(n) FROM gone GROUP BY state, kind;

-- name: compact_dlq
WITH gone AS (DELETE FROM stats_dlq RETURNING stage, error_class, n)
INSERT INTO stats_dlq (stage, error_class, n)
SELECT stage, error_class, sum(n) FROM gone GROUP BY stage, error_class;

-- name: compact_contents
WITH gone AS (DELETE FROM stats_contents RETURNING n, bytes)
INSERT INTO stats_contents (n, bytes) SELECT coalesce(sum(n), 0), coalesce(sum(bytes), 0) FROM gone;

-- name: compact_completions
WITH gone AS (DELETE FROM stats_completions RETURNING n)
INSERT INTO stats_completions (n) SELECT coalesce(sum(n), 0) FROM gone;

-- name: recount_items_zero
-- Pairs that emptied stay as 0 rows, as on SQLite.
WITH gone AS (DELETE FROM stats_items RETURNING state, kind)
INSERT INTO stats_items (state, kind, n) SELECT DISTINCT state, kind, 0 FROM gone;

-- name: recount_items
INSERT INTO stats_items (state, kind, n) SELECT state, kind, count(*) FROM items GROUP BY state, kind;

-- name: completions
SELECT item_id, count(*) AS n FROM completions GROUP BY item_id;

-- name: kv_get
SELECT value FROM kv WHERE key = %(key)s;

-- name: kv_set
INSERT INTO kv (key, value, updated_at) VALUES (%(key)s, %(value)s, %(now)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at;

-- name: kv_delete
DELETE FROM kv WHERE key = %(key)s;

-- name: kv_items
SELECT key, value FROM kv WHERE starts_with(key, %(prefix)s) ORDER BY key;

-- name: kv_prune
DELETE FROM kv WHERE starts_with(key, %(prefix)s) AND updated_at < %(before)s;

-- name: api_key_insert
INSERT INTO api_keys (id, name, scopes, secret_hash, pepper_id, created_at)
VALUES (%(id)s, %(name)s, %(scopes)s, %(secret_hash)s, %(pepper_id)s, %(now)s);

-- name: api_key_get
SELECT * FROM api_keys WHERE id = %(id)s;

-- name: api_key_list
SELECT id, name, scopes, created_at, revoked_at, last_used_at, pepper_id FROM api_keys ORDER BY created_at;

-- name: api_key_revoke
UPDATE api_keys SET revoked_at = %(now)s WHERE id = %(id)s AND revoked_at IS NULL;

-- name: api_key_touch
UPDATE api_keys SET last_used_at = greatest(coalesce(last_used_at, 0), %(now)s) WHERE id = %(id)s;

-- name: api_key_rehash
UPDATE api_keys SET secret_hash = %(new_hash)s, pepper_id = %(pepper_id)s
 WHERE id = %(id)s AND secret_hash = %(old_hash)s;

-- name: queued_count
SELECT coalesce(sum(n), 0) FROM stats_items WHERE state = 'queued';

-- name: oldest_queued
SELECT min(created_at) FROM items WHERE state = 'queued';

-- name: completions_seq
-- The kept counter (migration 0003), not max(seq): rolled-back transactions burn seq values.
SELECT coalesce(sum(n), 0)::bigint AS n FROM stats_completions;

-- name: validators_for
SELECT url, etag, last_modified, item_id, content_hash FROM fetch_validators WHERE url = ANY(%(urls)s);

-- name: validators_upsert
INSERT INTO fetch_validators (url, etag, last_modified, item_id, content_hash, updated_at)
VALUES (%(url)s, %(etag)s, %(last_modified)s, %(item_id)s, %(content_hash)s, %(now)s)
ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
    item_id = excluded.item_id, content_hash = excluded.content_hash, updated_at = excluded.updated_at;
