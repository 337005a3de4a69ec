"""The full-text index and content counters of SQLite, written once per engine transaction
(migration 0011) and still row by row for rows the engine's insert did not mark (an older release
during a blue-green deploy, a transfer, a hand-made row)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from atlas.engine import queue
from atlas.store.models import ContentResult, NewItem
from atlas.store.sqlite import SQLiteStore
from tests.helpers.stores import sql_rows


def _run(store: SQLiteStore, texts: list[str]) -> dict[str, str]:
    """Enqueue a document per text, claim them all and apply their results in one transaction."""
    store.enqueue([NewItem(kind="document", payload={"content": t}) for t in texts])
    claimed = store.claim("test", len(texts), 60)
    results = {
        c.id: ContentResult(content_hash=f"h-{c.payload['content']}", text=c.payload["content"])
        for c in claimed
    }
    return store.apply([queue.succeeded(c, results[c.id], {}) for c in claimed])


def _index_matches_the_rows(store: SQLiteStore) -> None:
    # FTS5 checks its index against the content table: a row indexed twice or not at all fails.
    with closing(sqlite3.connect(store.path)) as conn:
        conn.execute("INSERT INTO contents_fts (contents_fts) VALUES ('integrity-check')")
    counted = sql_rows(store, "SELECT count(*), coalesce(sum(bytes), 0) FROM contents")[0]
    kept = sql_rows(store, "SELECT n, bytes FROM stats_contents")[0]
    assert kept == counted


def test_a_batch_of_results_is_searchable_and_counted_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db")
    try:
        applied = _run(store, ["alpha walrus", "beta walrus", "alpha walrus"])  # the third: a duplicate
        assert sorted(applied.values()) == ["done", "done", "duplicate"]
        _index_matches_the_rows(store)
        assert len(store.search("walrus")[0]) == 2
        # A second transaction indexes its own rows only.
        _run(store, ["gamma walrus", "delta narwhal"])
        _index_matches_the_rows(store)
        assert len(store.search("walrus")[0]) == 3
        assert [h.item_id for h in store.search("narwhal")[0]] != []
        assert sql_rows(store, "SELECT n FROM stats_contents")[0][0] == 4
    finally:
        store.close()


def test_a_row_inserted_as_the_previous_release_does_is_indexed_and_counted_by_the_triggers(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "atlas.db")
    try:
        _run(store, ["engine walrus"])
        with closing(sqlite3.connect(store.path)) as conn, conn:
            # The insert of the release before migration 0011: no `batched` column named.
            conn.execute(
                "INSERT INTO contents (item_id, content_hash, content_type, title, text, canonical_url,"
                " language, author, published, url, bytes, created_at)"
                " VALUES ('old-1', 'h-old', 'text/plain', 'Old title', 'older walrus', NULL, NULL, NULL,"
                " NULL, NULL, 12, 1.0)"
            )
        _index_matches_the_rows(store)
        assert {h.item_id for h in store.search("walrus")[0]} >= {"old-1"}
        assert len(store.search("walrus")[0]) == 2
        assert sql_rows(store, "SELECT n, bytes FROM stats_contents")[0] == (2, len("engine walrus") + 12)
    finally:
        store.close()
