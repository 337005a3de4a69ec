-- Named queries for the PostgreSQL store, one per operation, named as in atlas/store/queries.sql
-- so the two backends can be compared query by query. Parameters are %(name)s (psycopg).

-- name: insert_items
-- One statement per batch (arrays, not one row per round trip). A key another transaction
-- inserted meanwhile is skipped here and looked up afterwards: no unique violation, one item.
INSERT INTO items (id, kind, source, idempotency_key, priority, state, payload, metadata,
                   next_attempt_at, trace_context, request_hash, created_at, updated_at)
SELECT id, kind, source, ikey, priority, 'queued', payload, metadata, due, trace, rhash,
       accepted, accepted
  FROM unnest(%(ids)s::text[], %(kinds)s::text[], %(sources)s::text[], %(keys)s::text[],
              %(priorities)s::int[], %(payloads)s::text[], %(metadatas)s::text[],
              %(dues)s::float8[], %(traces)s::text[], %(rhashes)s::text[], %(nows)s::float8[])
       AS r (id, kind, source, ikey, priority, payload, metadata, due, trace, rhash, accepted)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: items_by_key
SELECT idempotency_key, id, request_hash FROM items WHERE idempotency_key = ANY(%(keys)s);

-- name: subscribe_feed
INSERT INTO feeds (id, url, interval_seconds, next_poll_at, created_at)
VALUES ('f_' || %(id)s, %(url)s, %(interval)s, %(now)s, %(now)s)
ON CONFLICT (url) DO NOTHING;

-- name: copy_items
-- Key-less batches (atlas.store.postgres.store): item_row's columns in its order (the acceptance
-- time feeding created_at), then the state and updated_at.
COPY items (id, kind, source, idempotency_key, priority, payload, metadata, next_attempt_at,
            trace_context, request_hash, created_at, state, updated_at) FROM STDIN;

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

-- name: heartbeat
UPDATE items SET lease_until = %(until)s WHERE state = 'leased' AND lease_owner = %(owner)s;

-- name: lock_leases
-- Locked in id order, so two transactions touching the same items cannot deadlock.
SELECT id, lease_token FROM items
 WHERE state = 'leased' AND id = ANY(%(ids)s) ORDER BY id FOR UPDATE;

-- name: content_owner_by_hash
SELECT item_id FROM contents WHERE content_hash = %(hash)s;

-- name: content_owner_by_url
SELECT item_id FROM contents WHERE canonical_url = %(url)s ORDER BY seq LIMIT 1;

-- name: lock_urls
-- Serialises the check-then-insert of each canonical URL across transactions (it is not unique).
-- The URLs come sorted and unnest yields them in the array's order, so two batches take their
-- common locks in the same order (no deadlock).
SELECT pg_advisory_xact_lock(hashtextextended(u, 17)) FROM unnest(%(urls)s::text[]) AS u;

-- name: content_owners_by_hash
SELECT content_hash AS key, item_id FROM contents WHERE content_hash = ANY(%(keys)s::text[]);

-- name: content_owners_by_url
-- The first item (lowest seq) stored under each URL, as content_owner_by_url picks.
SELECT DISTINCT ON (canonical_url) canonical_url AS key, item_id
  FROM contents WHERE canonical_url = ANY(%(keys)s::text[])
 ORDER BY canonical_url, seq;

-- name: transition
UPDATE items
   SET state = %(state)s,
       attempts = attempts + %(attempts_inc)s,
       deaths = deaths + %(deaths_inc)s,
       isolate = %(isolate)s,
       next_attempt_at = %(next_attempt_at)s,
       lease_owner = NULL, lease_token = NULL, lease_until = NULL,
       last_error_stage = coalesce(%(error_stage)s, last_error_stage),
       last_error_class = coalesce(%(error_class)s, last_error_class),
       last_error_message = coalesce(%(error_message)s, last_error_message),
       last_error_host = coalesce(%(error_host)s, last_error_host),
       dead_reason = %(dead_reason)s,
       content_hash = coalesce(%(content_hash)s, content_hash),
       duplicate_of = %(duplicate_of)s,
       timings = coalesce(%(timings)s, timings),
       done_at = %(done_at)s,
       updated_at = %(now)s
 WHERE id = %(id)s AND lease_token = %(token)s AND state = 'leased';

-- name: insert_attempt
INSERT INTO attempts (item_id, attempt, at, outcome, stage, error_class, message, host)
VALUES (%(id)s, (SELECT attempts FROM items WHERE id = %(id)s) + %(attempt_offset)s, %(now)s, %(outcome)s,
        %(error_stage)s, %(error_class)s, %(error_message)s, %(error_host)s);

-- name: insert_content
-- RETURNING nothing: another transaction stored this text first (the item is its duplicate).
INSERT INTO contents (item_id, content_hash, content_type, title, text, canonical_url, language,
                      author, published, url, bytes, created_at)
VALUES (%(id)s, %(content_hash)s, %(content_type)s, %(title)s, %(text)s, %(canonical_url)s,
        %(language)s, %(author)s, %(published)s, %(url)s, %(bytes)s, %(now)s)
ON CONFLICT (content_hash) DO NOTHING
RETURNING item_id;

-- name: insert_completion
INSERT INTO completions (item_id, outcome, lease_token, at) VALUES (%(id)s, %(outcome)s, %(token)s, %(now)s);

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
