-- contents.tsv, the search index's tsvector, is written by the store (issue 18;
-- atlas/store/tsvector.py): the generated column made the server run its text search
-- parser on every stored text, 140-170 µs of its CPU for 1 KB. atlas_tsvector is the definition
-- the store follows: runs of letters and digits, lowercased, title (weight A) then text (B). A row
-- written without a tsv (an older release during a rolling deploy, the SQLite transfer's COPY, a
-- hand-written INSERT) gets it from the trigger, and the rows already stored are indexed again so
-- that every row holds the same words a search now asks for.
-- deploy: backward-compatible
-- (an older release inserts without tsv, as it always did, and the trigger fills it in)
CREATE OR REPLACE FUNCTION atlas_tsvector(title text, body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('simple', regexp_replace(coalesce(title, ''), '[^[:alnum:]]+', ' ', 'g')), 'A')
        || setweight(to_tsvector('simple', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g')), 'B')
$$;

CREATE OR REPLACE FUNCTION atlas_contents_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tsv := atlas_tsvector(NEW.title, NEW.text);
    RETURN NEW;
END $$;

-- Once, while tsv is still generated: run again on a converted database it leaves the rows as
-- they are (after a restore of an older dump, whose tsv is generated again, it converts again).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'contents'
                  AND column_name = 'tsv' AND is_generated = 'ALWAYS') THEN
        ALTER TABLE contents ALTER COLUMN tsv DROP EXPRESSION;
        UPDATE contents SET tsv = atlas_tsvector(title, text);
    END IF;
END $$;

-- WHEN: a row that comes with its tsv (the store's) costs no call of the function.
DROP TRIGGER IF EXISTS contents_tsv ON contents;
CREATE TRIGGER contents_tsv BEFORE INSERT ON contents
    FOR EACH ROW WHEN (NEW.tsv IS NULL) EXECUTE FUNCTION atlas_contents_tsv();
DROP TRIGGER IF EXISTS contents_tsv_update ON contents;
CREATE TRIGGER contents_tsv_update BEFORE UPDATE OF title, text ON contents
    FOR EACH ROW WHEN (NEW.tsv IS NOT DISTINCT FROM OLD.tsv) EXECUTE FUNCTION atlas_contents_tsv();
