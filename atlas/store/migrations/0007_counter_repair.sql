-- Issue 10: feed polls inserted items without counting them (0005 made every insert path count
-- its own rows), so databases that polled feeds hold wrong stats_items counters (a queued-url
-- count of -1 after one enqueued and one polled url item were leased). Every insert path now goes
-- through atlas.store.sqlite_items.insert_items; this rebuilds the counters from the rows once.
-- The DLQ counters are rebuilt too: they are cheap to recount and then certainly agree.
UPDATE stats_items SET n = 0;
INSERT INTO stats_items (state, kind, n) SELECT state, kind, count(*) FROM items GROUP BY state, kind
ON CONFLICT (state, kind) DO UPDATE SET n = excluded.n;
UPDATE stats_dlq SET n = 0;
INSERT INTO stats_dlq (stage, error_class, n)
SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), count(*)
  FROM items WHERE state = 'dead' GROUP BY 1, 2
ON CONFLICT (stage, error_class) DO UPDATE SET n = excluded.n;
