"""Search and feed subscriptions on the PostgreSQL store (mixed into PostgresStore).

Search runs on the `tsv` column (title weight A, text B) and its GIN index; ranks and cursors have
the SQLite store's shape (lower rank is better; "rank:seq"), so the API serves both alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from atlas.store.ids import new_id
from atlas.store.models import NewItem, SearchHit
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries
from atlas.store.sqlite_content import _WORD, MAX_QUERY_TERMS, decode_cursor, encode_cursor

C = load_queries("atlas.store.postgres", "content.sql")
Q = load_queries("atlas.store.postgres", "queries.sql")


def search_words(text: str) -> str | None:
    """The user's words, space-separated, for plainto_tsquery (every word must match; tsquery
    syntax in the input is never parsed); None if there are no words."""
    words = _WORD.findall(text)[:MAX_QUERY_TERMS]
    return " ".join(words) or None


class ContentStore:
    if TYPE_CHECKING:
        clock: Callable[[], float]

        def _read(self) -> AbstractContextManager[Conn]: ...

        def _write(self) -> AbstractContextManager[Conn]: ...

        def _insert_items(
            self, conn: Conn, rows: Sequence[tuple[str, NewItem, str | None]], now: float
        ) -> set[str]: ...

    # -- search ---------------------------------------------------------------------------------

    def search(
        self, query: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[SearchHit], str | None]:
        """Stored contents matching every word of `query`, best first.

        Returns (hits, next cursor or None). Raises ItemError for a cursor it did not hand out.
        """
        words = search_words(query)
        after_rank, after_seq = decode_cursor(cursor) if cursor else (None, 0)
        if words is None:
            return [], None
        params = {"query": words, "after_rank": after_rank, "after_seq": after_seq, "limit": limit}
        with self._read() as conn:
            rows = conn.execute(C["search"], params).fetchall()
        hits = [
            SearchHit(r["item_id"], r["title"], r["url"], r["canonical_url"], r["snippet"], r["rank"])
            for r in rows
        ]
        last = rows[-1] if len(rows) == limit else None
        return hits, encode_cursor(last["rank"], last["seq"]) if last is not None else None

    # -- conditional requests -------------------------------------------------------------------

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

    # -- feeds ----------------------------------------------------------------------------------

    def feed_add(self, url: str, interval_seconds: float | None = None) -> dict[str, Any]:
        """Subscribe to `url` (or update its interval and reset an error backoff); the feed row."""
        with self._write() as conn:
            now = self.clock()
            row = conn.execute(
                C["feed_insert"],
                {"id": "f_" + new_id(now), "url": url, "interval": interval_seconds, "now": now},
            ).fetchone()
            assert row is not None  # INSERT ... ON CONFLICT DO UPDATE RETURNING always returns it
            feed = conn.execute(C["feed_get"], {"id": row["id"]}).fetchone()
            assert feed is not None
            return dict(feed)

    def feed_get(self, feed_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(C["feed_get"], {"id": feed_id}).fetchone()
        return dict(row) if row else None

    def feed_list(self, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute(C["feed_list"], {"after": after or "", "limit": limit})]

    def feed_poll_now(self, feed_id: str) -> dict[str, Any] | None:
        """Make a feed due now and reset its error backoff; the feed row, or None if unknown."""
        with self._write() as conn:
            conn.execute(C["feed_poll_now"], {"id": feed_id, "now": self.clock()})
            row = conn.execute(C["feed_get"], {"id": feed_id}).fetchone()
        return dict(row) if row else None

    def feed_delete(self, feed_id: str) -> bool:
        """Unsubscribe; items the feed produced stay. Returns False when there was no such feed."""
        with self._write() as conn:
            conn.execute(C["feed_entries_delete"], {"id": feed_id})
            return conn.execute(C["feed_delete"], {"id": feed_id}).rowcount == 1

    def feeds_due(self, now: float, limit: int, default_interval: float = 900.0) -> list[dict[str, Any]]:
        """Feeds whose poll is due, with `interval` resolved from the default when unset."""
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(C["feeds_due"], {"now": now, "limit": limit})]
        for row in rows:
            row["interval"] = row["interval_seconds"] or default_interval
        return rows

    def feed_polled(
        self,
        feed_id: str,
        entries: Sequence[tuple[str, NewItem]],
        *,
        status: str,
        next_poll_at: float,
        etag: str | None = None,
        last_modified: str | None = None,
        title: str | None = None,
    ) -> int:
        """Record a successful poll; enqueue the items of entries not seen before. Returns how many."""
        now = self.clock()
        rows: list[tuple[str, NewItem, str | None]] = []
        with self._write() as conn:
            for key, item in entries:
                item_id = new_id(now)
                cur = conn.execute(
                    C["feed_entry_insert"], {"feed_id": feed_id, "key": key, "item_id": item_id, "now": now}
                )
                if cur.rowcount == 1:  # else: seen on an earlier poll
                    rows.append((item_id, item, None))
            self._insert_items(conn, rows, now)
            conn.execute(
                C["feed_polled"],
                {
                    "id": feed_id,
                    "now": now,
                    "status": status,
                    "next_poll_at": next_poll_at,
                    "etag": etag,
                    "last_modified": last_modified,
                    "title": title,
                    "added": len(rows),
                },
            )
        return len(rows)

    def feed_failed(self, feed_id: str, error: str, *, next_poll_at: float, count: bool = True) -> None:
        """Record a failed (count=True) or deferred poll and when to try again."""
        with self._write() as conn:
            conn.execute(
                C["feed_failed"],
                {
                    "id": feed_id,
                    "now": self.clock(),
                    "status": "error" if count else "deferred",
                    "error": error,
                    "inc": int(count),
                    "next_poll_at": next_poll_at,
                },
            )
