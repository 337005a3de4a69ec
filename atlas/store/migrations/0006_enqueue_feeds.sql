-- SQLiteStore.enqueue subscribes the feeds of the `feed` items it inserts, in the same
-- transaction, instead of a per-row trigger: a trigger with a WHEN clause still ran for every
-- inserted item and cost ~1 us of ~9 us per stored item in 1,000-item batches (measured), for
-- the rare feed item. Anything inserting feed items by hand must subscribe them as enqueue does.
DROP TRIGGER IF EXISTS feeds_subscribe;
