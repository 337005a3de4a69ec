-- Named queries for search and feeds on PostgreSQL (atlas.store.postgres.content).

-- name: search
-- rank is -ts_rank so that, as with SQLite's bm25, lower is better and cursors keep one shape;
-- float8 so the cursor's value compares equal to the row's. Title (weight A) counts five times
-- the text (B), as bm25's weights do on SQLite. Snippets only for the page returned. The query
-- is a tsquery the store makes of the user's words, split as the index's are (tsvector.py).
WITH q AS (SELECT %(query)s::tsquery AS query),
page AS (
    SELECT c.seq, c.item_id, c.title, c.url, c.canonical_url, c.text,
           (-ts_rank('{0, 0, 0.2, 1.0}', c.tsv, q.query))::float8 AS rank
      FROM contents c, q
     WHERE c.tsv @@ q.query
)
SELECT p.item_id, p.title, p.url, p.canonical_url, p.seq, p.rank,
       ts_headline('simple', p.text, q.query,
                   'StartSel=**, StopSel=**, MaxWords=16, MinWords=4, ShortWord=0, MaxFragments=1, FragmentDelimiter=…')
           AS snippet
  FROM page p, q
 WHERE %(after_rank)s::float8 IS NULL
    OR p.rank > %(after_rank)s::float8
    OR (p.rank = %(after_rank)s::float8 AND p.seq > %(after_seq)s)
 ORDER BY p.rank, p.seq
 LIMIT %(limit)s;

-- name: feed_insert
INSERT INTO feeds (id, url, interval_seconds, next_poll_at, created_at)
VALUES (%(id)s, %(url)s, %(interval)s, %(now)s, %(now)s)
ON CONFLICT (url) DO UPDATE SET interval_seconds = coalesce(excluded.interval_seconds, feeds.interval_seconds),
    next_poll_at = CASE WHEN feeds.failures > 0 THEN least(feeds.next_poll_at, excluded.next_poll_at)
                        ELSE feeds.next_poll_at END,
    failures = 0
RETURNING id;

-- name: feed_poll_now
UPDATE feeds SET next_poll_at = least(next_poll_at, %(now)s), failures = 0 WHERE id = %(id)s;

-- name: feed_get
SELECT * FROM feeds WHERE id = %(id)s;

-- name: feed_list
SELECT * FROM feeds WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: feed_delete
DELETE FROM feeds WHERE id = %(id)s;

-- name: feed_entries_delete
DELETE FROM feed_entries WHERE feed_id = %(id)s;

-- name: feeds_due
SELECT * FROM feeds WHERE next_poll_at <= %(now)s ORDER BY next_poll_at LIMIT %(limit)s;

-- name: feed_entry_insert
INSERT INTO feed_entries (feed_id, entry_key, item_id, seen_at) VALUES (%(feed_id)s, %(key)s, %(item_id)s, %(now)s)
ON CONFLICT (feed_id, entry_key) DO NOTHING;

-- name: feed_polled
UPDATE feeds
   SET last_polled_at = %(now)s, last_status = %(status)s, last_error = NULL, failures = 0,
       next_poll_at = %(next_poll_at)s, etag = coalesce(%(etag)s, etag),
       last_modified = coalesce(%(last_modified)s, last_modified), title = coalesce(%(title)s, title),
       entries_seen = entries_seen + %(added)s
 WHERE id = %(id)s;

-- name: feed_failed
UPDATE feeds
   SET last_polled_at = %(now)s, last_status = %(status)s, last_error = %(error)s,
       failures = failures + %(inc)s, next_poll_at = %(next_poll_at)s
 WHERE id = %(id)s;
