-- Named queries for search and feeds (atlas.store.sqlite_content). `-- name: x` starts a query.

-- name: search
-- bm25 weights: a match in the title counts five times one in the text. Keyset pagination on
-- (rank, seq): rank is deterministic for a given index, so the cursor resumes exactly.
SELECT c.item_id, c.title, c.url, c.canonical_url, c.seq,
       snippet(contents_fts, 1, '**', '**', '…', 16) AS snippet,
       bm25(contents_fts, 5.0, 1.0) AS rank
  FROM contents_fts JOIN contents c ON c.seq = contents_fts.rowid
 WHERE contents_fts MATCH :query
   AND (:after_rank IS NULL
        OR bm25(contents_fts, 5.0, 1.0) > :after_rank
        OR (bm25(contents_fts, 5.0, 1.0) = :after_rank AND c.seq > :after_seq))
 ORDER BY rank, c.seq
 LIMIT :limit;

-- name: feed_insert
-- Subscribing again to a feed in error backoff asks for it now: the backoff is reset (SET
-- expressions all read the row as it was, so the CASE sees the old failure count).
INSERT INTO feeds (id, url, interval_seconds, next_poll_at, created_at)
VALUES (:id, :url, :interval, :now, :now)
ON CONFLICT (url) DO UPDATE SET interval_seconds = coalesce(excluded.interval_seconds, interval_seconds),
    next_poll_at = CASE WHEN failures > 0 THEN min(next_poll_at, excluded.next_poll_at) ELSE next_poll_at END,
    failures = 0
RETURNING id;

-- name: feed_poll_now
-- Due at once, backoff forgotten; last_status and last_error keep describing the last poll.
UPDATE feeds SET next_poll_at = min(next_poll_at, :now), failures = 0 WHERE id = :id;

-- name: feed_get
SELECT * FROM feeds WHERE id = :id;

-- name: feed_list
SELECT * FROM feeds WHERE id > :after ORDER BY id LIMIT :limit;

-- name: feed_delete
DELETE FROM feeds WHERE id = :id;

-- name: feed_entries_delete
DELETE FROM feed_entries WHERE feed_id = :id;

-- name: feeds_due
SELECT * FROM feeds WHERE next_poll_at <= :now ORDER BY next_poll_at LIMIT :limit;

-- name: feed_entry_insert
INSERT INTO feed_entries (feed_id, entry_key, item_id, seen_at) VALUES (:feed_id, :key, :item_id, :now)
ON CONFLICT (feed_id, entry_key) DO NOTHING;

-- name: feed_polled
UPDATE feeds
   SET last_polled_at = :now, last_status = :status, last_error = NULL, failures = 0,
       next_poll_at = :next_poll_at, etag = coalesce(:etag, etag),
       last_modified = coalesce(:last_modified, last_modified), title = coalesce(:title, title),
       entries_seen = entries_seen + :added
 WHERE id = :id;

-- name: feed_failed
UPDATE feeds
   SET last_polled_at = :now, last_status = :status, last_error = :error,
       failures = failures + :inc, next_poll_at = :next_poll_at
 WHERE id = :id;

-- name: validators_upsert
INSERT INTO fetch_validators (url, etag, last_modified, item_id, content_hash, updated_at)
VALUES (:url, :etag, :last_modified, :item_id, :content_hash, :now)
ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
    item_id = excluded.item_id, content_hash = excluded.content_hash, updated_at = excluded.updated_at;

-- name: validators_in
-- {} is a list of ? placeholders (ContentStore.attach_validators fills it chunk by chunk).
SELECT * FROM fetch_validators WHERE url IN ({});
