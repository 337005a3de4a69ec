-- The enqueue path counts its own inserts: SQLiteStore.enqueue adds one row per kind to
-- stats_items in the same transaction, instead of a per-row trigger. The trigger's upsert ran
-- once per inserted row and cost ~4.5 us of the ~16 us a batched item took to store (measured
-- with bench/ingest.py's batch case); one set-based update per transaction costs nothing
-- measurable. Every other transition (update, delete) keeps its trigger, so anything that inserts
-- items outside SQLiteStore.enqueue must count them as enqueue does (SQLiteStore.recount_items
-- rebuilds the counters from the rows).
DROP TRIGGER IF EXISTS stats_items_insert;
