-- The oldest-queued gauge without a per-insert index (issue 18). `items_queued_created` cost every
-- enqueue an index insert (0.78 -> 0.93 of the raw batched-insert floor without it, README) for one
-- query read every few seconds. Item ids sort by acceptance time (atlas.store.ids), so the oldest
-- queued item is near the first queued id in primary-key order; `queue_hint` remembers a lower
-- bound of the queued ids, so the gauge walks the primary key from there instead of from the start.
-- Invariant, true in every committed snapshot: every queued item's id >= queue_hint.id.
--   * lowered by the trigger below when an item goes back to queued (retry, reaped lease, DLQ
--     requeue, release), in the same transaction;
--   * lowered by every enqueue transaction to its smallest new id (atlas.store.sqlite_items: once
--     per transaction, not by a per-row trigger, which cost more than the index did);
--   * advanced to the first queued id by one UPDATE in a write transaction (the lease reaper's).
-- Dropping an index is backward-compatible for the old release during a blue-green deploy: its
-- `min(created_at) WHERE state = 'queued'` still answers, from the items_due partial index and the
-- rows (it only loses speed), and the trigger keeps the hint right for its requeues too.
-- deploy: backward-compatible
DROP INDEX items_queued_created;

CREATE TABLE queue_hint (id TEXT NOT NULL);
INSERT INTO queue_hint (id) SELECT coalesce(min(id), '') FROM items WHERE state = 'queued';

CREATE TRIGGER items_requeued_hint AFTER UPDATE OF state ON items
WHEN NEW.state = 'queued' AND OLD.state <> 'queued'
BEGIN
    UPDATE queue_hint SET id = NEW.id WHERE id > NEW.id;
END;
