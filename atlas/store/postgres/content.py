"""Search and feeds on the PostgreSQL store: what is PostgreSQL's own (mixed into PostgresStore;
the rest is atlas.store.feedsearch). Search runs on the `tsv` column (title weight A, text B) and
its GIN index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from atlas.store.feedsearch import FeedsAndSearchStore, query_words
from atlas.store.models import NewItem
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries
from atlas.store.tsvector import tsquery

C = load_queries("atlas.store.postgres", "content.sql")
Q = load_queries("atlas.store.postgres", "queries.sql")


def search_words(text: str) -> str | None:
    """The user's words as a tsquery that every one must match, split as the index's words are
    (atlas.store.tsvector); tsquery syntax in the input is never parsed, every word is
    quoted. None if there are no words."""
    return tsquery(query_words(text))


class ContentStore(FeedsAndSearchStore):
    if TYPE_CHECKING:

        def _insert_items(
            self, conn: Conn, rows: Sequence[tuple[str, NewItem, str | None]], now: float
        ) -> set[str]: ...

    def _search_terms(self, text: str) -> str | None:
        return search_words(text)

    def _add_items(self, conn: Conn, rows: Sequence[tuple[str, NewItem, str | None]], now: float) -> None:
        self._insert_items(conn, rows, now)

    def attach_validators(self, conn: Conn, claimed: Sequence[Any]) -> None:
        """Put what the last fetch of each claimed url item's URL left into payload["validators"]."""
        urls = [c.payload.get("url") for c in claimed if c.kind == "url"]
        found = {
            r["url"]: {k: r[k] for k in ("etag", "last_modified", "item_id", "content_hash")}
            for r in conn.execute(Q["validators_for"], {"urls": urls}).fetchall()
        }
        for c in claimed:
            if c.kind == "url" and c.payload.get("url") in found:
                c.payload["validators"] = found[c.payload["url"]]
