"""Search and feeds on the SQLite store: what is SQLite's own (mixed into SQLiteStore; the rest is
atlas.store.feedsearch). Search runs on the FTS5 index that migration 0004 keeps beside `contents`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from atlas.store.dialect import chunks
from atlas.store.feedsearch import FeedsAndSearchStore, query_words
from atlas.store.models import NewItem
from atlas.store.queries import load_queries
from atlas.store.sqlite_items import insert_items, item_row

C = load_queries("atlas.store", "content.sql")


def fts_query(text: str) -> str | None:
    """The user's words as an FTS5 query of quoted terms (all must match); None if no words.

    Quoting every term means FTS5 syntax in the input (quotes, AND/OR/NEAR, column filters,
    parentheses) is searched for as words, never parsed: no query can be malformed.
    """
    return " ".join(f'"{w}"' for w in query_words(text)) or None


class ContentStore(FeedsAndSearchStore):
    def _search_terms(self, text: str) -> str | None:
        return fts_query(text)

    def _add_items(
        self, conn: sqlite3.Connection, rows: Sequence[tuple[str, NewItem, str | None]], now: float
    ) -> None:
        insert_items(conn, [item_row(item_id, item, key, now) for item_id, item, key in rows], now)

    def attach_validators(self, conn: sqlite3.Connection, claimed: Sequence[Any]) -> None:
        """Put what the last fetch of each claimed url item's URL left into payload["validators"]."""
        urls = [c.payload.get("url") for c in claimed if c.kind == "url"]
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(urls, 500):  # under SQLite's limit of parameters
            for row in conn.execute(C["validators_in"].format(",".join("?" * len(chunk))), chunk):
                found[row["url"]] = {k: row[k] for k in ("etag", "last_modified", "item_id", "content_hash")}
        for c in claimed:
            if c.kind == "url" and c.payload.get("url") in found:
                c.payload["validators"] = found[c.payload["url"]]
