"""Search and feed subscriptions, for both backends (mixed into the store classes).

Each backend gives its named queries (SQLite: FTS5, migration 0004; PostgreSQL: the `tsv` column
and its GIN index), how the user's words become its full-text query (`_search_terms`) and how
items enter its items table (`_add_items`); ranks and cursors have one shape (lower rank is
better; "rank:seq"), so the API serves both alike. Feeds are the subscriptions the poller
(atlas.pipeline.feeds) works through.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from atlas.errors import ItemError
from atlas.store.dialect import BackendMixin
from atlas.store.ids import new_id
from atlas.store.models import CURSOR_PATTERN, NewItem, SearchHit

WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 32

# "rank:seq": readable, and every string of this shape is a valid position (the API states the
# pattern, so a client can never send a well-formed cursor the store rejects).
_CURSOR = re.compile(CURSOR_PATTERN)


def query_words(text: str) -> list[str]:
    """The words of a search, at most MAX_QUERY_TERMS (each backend quotes or joins them)."""
    return WORD.findall(text)[:MAX_QUERY_TERMS]


def encode_cursor(rank: float, seq: int) -> str:
    return f"{rank!r}:{seq}"


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Raises ItemError naming the cursor when it is not of the form this store hands out."""
    if not _CURSOR.match(cursor):
        raise ItemError(f"cursor: not a cursor from a previous page ({cursor[:40]!r})")
    rank, _, seq = cursor.partition(":")
    return float(rank), int(seq)


class FeedsAndSearchStore(BackendMixin):
    def _search_terms(self, text: str) -> str | None:
        """The backend's full-text query for every word of `text`; None if it has no words."""
        raise NotImplementedError

    def _add_items(self, conn: Any, rows: Sequence[tuple[str, NewItem, str | None]], now: float) -> None:
        """Insert (id, item, idempotency key) rows in the caller's transaction, counted and with
        feed items subscribed, as enqueue inserts them."""
        raise NotImplementedError

    # -- search ---------------------------------------------------------------------------------

    def search(
        self, query: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[SearchHit], str | None]:
        """Stored contents matching every word of `query`, best (lowest rank) first.

        Returns (hits, next cursor or None). Raises ItemError for a cursor it did not hand out.
        """
        terms = self._search_terms(query)
        after_rank, after_seq = decode_cursor(cursor) if cursor else (None, 0)
        if terms is None:
            return [], None
        params = {"query": terms, "after_rank": after_rank, "after_seq": after_seq, "limit": limit}
        with self._read() as conn:
            rows = conn.execute(self.sql["search"], params).fetchall()
        hits = [
            SearchHit(r["item_id"], r["title"], r["url"], r["canonical_url"], r["snippet"], r["rank"])
            for r in rows
        ]
        last = rows[-1] if len(rows) == limit else None
        return hits, encode_cursor(last["rank"], last["seq"]) if last is not None else None

    # -- feeds ----------------------------------------------------------------------------------

    def feed_add(self, url: str, interval_seconds: float | None = None) -> dict[str, Any]:
        """Subscribe to `url` (or update its interval if subscribed, and reset an error backoff so it
        is polled now); returns the feed row."""
        with self._write() as conn:
            now = self.clock()
            # INSERT ... ON CONFLICT DO UPDATE RETURNING always returns the row.
            row = conn.execute(
                self.sql["feed_insert"],
                {"id": "f_" + new_id(now), "url": url, "interval": interval_seconds, "now": now},
            ).fetchone()
            return dict(conn.execute(self.sql["feed_get"], {"id": row["id"]}).fetchone())

    def feed_get(self, feed_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(self.sql["feed_get"], {"id": feed_id}).fetchone()
        return dict(row) if row else None

    def feed_list(self, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(self.sql["feed_list"], {"after": after or "", "limit": limit})
            return [dict(r) for r in rows]

    def feed_poll_now(self, feed_id: str) -> dict[str, Any] | None:
        """Make a feed due now and reset its error backoff; the feed row, or None if unknown."""
        with self._write() as conn:
            conn.execute(self.sql["feed_poll_now"], {"id": feed_id, "now": self.clock()})
            row = conn.execute(self.sql["feed_get"], {"id": feed_id}).fetchone()
        return dict(row) if row else None

    def feed_delete(self, feed_id: str) -> bool:
        """Unsubscribe; items the feed produced stay. Returns False when there was no such feed."""
        with self._write() as conn:
            conn.execute(self.sql["feed_entries_delete"], {"id": feed_id})
            return bool(conn.execute(self.sql["feed_delete"], {"id": feed_id}).rowcount == 1)

    def feeds_due(self, now: float, limit: int, default_interval: float = 900.0) -> list[dict[str, Any]]:
        """Feeds whose poll is due, with `interval` resolved from the default when unset."""
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(self.sql["feeds_due"], {"now": now, "limit": limit})]
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
                    self.sql["feed_entry_insert"],
                    {"feed_id": feed_id, "key": key, "item_id": item_id, "now": now},
                )
                if cur.rowcount == 1:  # else: seen on an earlier poll
                    rows.append((item_id, item, None))
            self._add_items(conn, rows, now)  # inserts and counts, as enqueue does
            conn.execute(
                self.sql["feed_polled"],
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
                self.sql["feed_failed"],
                {
                    "id": feed_id,
                    "now": self.clock(),
                    "status": "error" if count else "deferred",
                    "error": error,
                    "inc": int(count),
                    "next_poll_at": next_poll_at,
                },
            )
