"""The PostgreSQL search index's tsvector, made by the store and sent in binary (issue 18;
atlas/store/tsvector.py), against the server's definition (migration 0005's
atlas_tsvector), which indexes rows written without one and the rows stored before it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from atlas.store.models import ContentResult, NewItem, Transition
from atlas.store.postgres import PostgresStore
from atlas.store.postgres.connection import TSVectorDumper, migrations
from atlas.store.tsvector import TSVector, tsquery, tsvector, words
from tests.helpers.postgres import scratch_database

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")

CORPUS = [
    *((None, README[i : i + 1024]) for i in range(0, 8192, 1024)),
    ("Release notes: v2.0", "What changed in version two, and why."),
    (None, "Café crème, naïve façade; ÉCOLE d'été"),
    (None, "e-mail me@example.com, see https://example.com/a_b/c.html?x=1&y=2 or /usr/lib/file.txt"),
    (None, "3.14 1,000 v2.0 10km 0x1F 1e10 -5 +7"),
    (None, "foo_bar BAZ__qux snake_case_words"),
    (None, "ελληνικά κείμενο, русский текст, 中文文本, עברית"),
    (None, "<b>bold</b> &amp; an entity, and don't or won't"),
    (None, "x" * 3000 + " after a word too long to index"),  # left out, takes no position
    (None, " ".join(["same"] * 300) + " other"),  # a word keeps 255 positions
    (None, " ".join(f"w{i % 50}" for i in range(17_000))),  # positions stop at 16,383
    ("A title that repeats", "the title repeats the title words"),  # one word, weights A and B
    ("word " * 10, "word " * 300),  # joined, a word keeps 256 positions
    (" ".join(f"t{i}" for i in range(16_500)), "the text after a title past the last position"),
    ("", ""),
    (None, " \t\n ... --- !!! "),
]


@pytest.mark.parametrize("title,text", CORPUS, ids=range(len(CORPUS)))
def test_the_stores_tsvector_is_the_one_the_server_makes(
    pg: PostgresStore, title: str | None, text: str
) -> None:
    with pg.db.transaction() as conn:
        row = conn.execute(
            "SELECT %(mine)s::tsvector = atlas_tsvector(%(title)s, %(text)s) AS same,"
            " %(mine)s::tsvector::text AS mine, atlas_tsvector(%(title)s, %(text)s)::text AS server",
            {"mine": tsvector(title, text), "title": title, "text": text},
        ).fetchone()
    assert row["same"], (row["mine"][:400], row["server"][:400])


def test_what_the_engine_stores_and_what_a_plain_insert_stores_are_found_alike(pg: PostgresStore) -> None:
    """A row the store writes carries its tsvector; one written without (an older release, a hand
    INSERT) gets it from the trigger. A search's words are split as the index's are: the parts
    of "e-mail" or "snake_case" find the text, and so does the whole, both ways."""
    item = pg.enqueue([NewItem(kind="document", payload={"content": "x"})])[0].id
    [claimed] = pg.claim("o", 1, 30)
    text = "Write an e-mail about snake_case names to the café"
    result = ContentResult(content_hash="h1", text=text, content_type="text/plain", title="Naming")
    assert pg.apply([Transition(claimed.id, claimed.token, "done", "done", result=result)]) == {item: "done"}
    with pg.db.transaction() as conn:
        conn.execute(
            "INSERT INTO contents (item_id, content_hash, text, bytes, created_at)"
            " VALUES ('by-hand', 'h2', 'An e-mail, by hand: snake_case again', 10, 0)"
        )
        rows = conn.execute(
            "SELECT item_id, tsv = atlas_tsvector(title, text) AS same FROM contents"
        ).fetchall()
    assert {r["item_id"]: r["same"] for r in rows} == {item: True, "by-hand": True}
    for query, found in [
        ("mail", {item, "by-hand"}),
        ("e-mail snake_case", {item, "by-hand"}),
        ("snake", {item, "by-hand"}),
        ("CASE names", {item}),
        ("café", {item}),
        ("naming", {item}),  # the title
        ("hand mail", {"by-hand"}),
        ("cafe", set()),  # no accent folding on PostgreSQL (as the 'simple' configuration had it)
        ("'&|!():*", set()),  # tsquery syntax is never parsed: no words, no error
    ]:
        hits, _ = pg.search(query)
        assert {h.item_id for h in hits} == found, query


def test_a_query_is_quoted_word_by_word() -> None:
    assert tsquery(["Foo-Bar", "it's"]) == "'foo' & 'bar' & 'it' & 's'"
    assert tsquery(["__", "--"]) is None
    assert words("Ünïcode_Wörds 42x") == ["ünïcode", "wörds", "42x"]
    # PostgreSQL text holds no NUL: the store drops them, so the word is the one stored.
    assert tsvector("t\0i", "a\0b c") == tsvector("ti", "ab c") != tsvector("t i", "a b c")


def test_migration_5_indexes_the_stored_rows_again_once_and_the_server_reads_the_binary_form(
    postgres_url: str,
) -> None:
    with scratch_database(postgres_url, "atlas_tsv") as url:
        with psycopg.connect(url) as conn:  # a database of the release before: tsv generated
            conn.execute(
                "CREATE TABLE atlas_schema (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL)"
            )
            for version, name, sql in migrations():
                if version < 5:
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO atlas_schema VALUES (%s, %s, now())", (version, name))
            conn.execute(
                "INSERT INTO contents (item_id, content_hash, title, text, bytes, created_at)"
                " VALUES ('old', 'h', 'Old-Style', 'mail me@example.com', 10, 0)"
            )
            before = conn.execute("SELECT tsv::text FROM contents").fetchone()
        assert before is not None and "'me@example.com'" in before[0]  # the server's parser's token
        store = PostgresStore(url, pool_size=1, migrate=True)
        try:
            hits, _ = store.search("example")
            assert [h.item_id for h in hits] == ["old"]
        finally:
            store.close()
        [(_, _, sql)] = [m for m in migrations() if m[0] == 5]
        with psycopg.connect(url) as conn:
            conn.adapters.register_dumper(TSVector, TSVectorDumper)
            after = conn.execute(
                "SELECT tsv::text, tsv = atlas_tsvector(title, text) FROM contents"
            ).fetchone()
            assert after is not None and after[1] is True, after  # indexed again by atlas_tsvector
            assert "'example':5B" in after[0] and "'me@example.com'" not in after[0], after
            generated = conn.execute(
                "SELECT is_generated FROM information_schema.columns"
                " WHERE table_name = 'contents' AND column_name = 'tsv'"
            ).fetchone()
            assert generated == ("NEVER",)
            conn.execute("UPDATE contents SET tsv = %s", (tsvector(None, "kept as sent"),))
            conn.execute(sql.encode())  # run again (a restore of a converted database): rows kept
            kept = conn.execute("SELECT tsv::text FROM contents").fetchone()
            assert kept == ("'as':2B 'kept':1B 'sent':3B",)
            triggers = conn.execute(
                "SELECT count(*) FROM pg_trigger"
                " WHERE tgrelid = 'contents'::regclass AND tgname LIKE 'contents_tsv%'"
            ).fetchone()
            assert triggers == (2,)


def test_a_text_of_over_a_megabyte_of_distinct_words_is_indexed_as_far_as_the_type_allows(
    pg: PostgresStore,
) -> None:
    """to_tsvector refused such a text outright ("string is too long for tsvector"), failing the
    item that carried it; the store indexes its words up to the tsvector's limit instead."""
    text = " ".join(f"w{i:09d}" for i in range(100_000))
    with pg.db.transaction() as conn:
        row = conn.execute("SELECT length(%s::tsvector) AS n", (tsvector(None, text),)).fetchone()
    assert 50_000 < row["n"] < 100_000
