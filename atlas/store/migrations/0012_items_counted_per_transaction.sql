-- Inline settling's state changes counted once per transaction, not by the per-row trigger
-- (issue 18). stats_items_update ran two statements for every item the engine settled (an update
-- and an upsert of stats_items): about a third of what the row's own update cost, measured (39 ->
-- 29 us a row without the item triggers). Now claim_settling counts the rows it moved with one
-- statement per (state, kind), in the same transaction (atlas.store.sqlite_queue).
--
-- How the trigger tells those rows apart: a statement whose caller counts the change flips
-- `counted` (1 - counted); every other update leaves it as it was, and the trigger counts exactly
-- those. The column means nothing else. The old release during a blue-green deploy never touches
-- it, so every change it makes is counted by the trigger as before; adding a column with a
-- constant default rewrites no row.
-- deploy: backward-compatible
ALTER TABLE items ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER stats_items_update;
CREATE TRIGGER stats_items_update AFTER UPDATE OF state, kind ON items
WHEN (old.state IS NOT new.state OR old.kind IS NOT new.kind) AND new.counted IS old.counted
BEGIN
    UPDATE stats_items SET n = n - 1 WHERE state = old.state AND kind = old.kind;
    INSERT INTO stats_items (state, kind, n) VALUES (new.state, new.kind, 1)
        ON CONFLICT (state, kind) DO UPDATE SET n = n + 1;
END;
