-- atlas_items_completed_total counted exactly. It was max(completions.seq), but a rolled-back
-- transaction burns the sequence values it took, so that ran ahead of the completions recorded.
-- Now a delta row per INSERT statement into completions, like the other counters (0001_init.sql);
-- PostgresStore.compact_counters folds them. Rows later deleted from completions stay counted:
-- it is a counter of completions ever recorded.
CREATE TABLE IF NOT EXISTS stats_completions (n bigint NOT NULL);

CREATE OR REPLACE FUNCTION atlas_count_completions_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_completions (n) SELECT count(*) FROM new_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- IF EXISTS / OR REPLACE / the DELETE: a restore of an older dump with --clean leaves this table
-- and trigger in place (the dump does not name them), and this migration then runs again.
DROP TRIGGER IF EXISTS stats_completions_insert ON completions;
CREATE TRIGGER stats_completions_insert AFTER INSERT ON completions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION atlas_count_completions_insert();

-- The starting value is the figure exported until now (max(seq)), not count(*): a counter that
-- went down would read to Prometheus as a reset, and the burnt values already exported cannot be
-- taken back; from here on it grows by exactly the completions committed.
DELETE FROM stats_completions;
INSERT INTO stats_completions (n) SELECT coalesce(max(seq), 0) FROM completions;
