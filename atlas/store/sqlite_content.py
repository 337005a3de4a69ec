"""Search and feed subscriptions on the SQLite store (mixed into SQLiteStore).

Search runs on the FTS5 index that migration 0004 keeps beside `contents`; feeds are the
subscriptions the poller (atlas.pipeline.feeds) works through.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from atlas.errors import ItemError
from atlas.store.ids import new_id
from atlas.store.models import CURSOR_PATTERN, NewItem, SearchHit
from atlas.store.queries import load_queries
from atlas.store.sqlite_items import insert_items, item_row

C = load_queries("atlas.store", "content.sql")
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 32


def fts_query(text: str) -> str | None:
    """The user's words as an FTS5 query of quoted terms (all must match); None if no words.

    Quoting every term means FTS5 syntax in the input (quotes, AND/OR/NEAR, column filters,
    parentheses) is searched for as words, never parsed: no query can be malformed.
    """
    words = _WORD.findall(text)[:MAX_QUERY_TERMS]
    return " ".join(f'"{w}"' for w in words) or None


# "rank:seq": readable, and every string of this shape is a valid position (the API states the
# pattern, so a client can never send a well-formed cursor the store rejects).
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(rank: float, seq: int) -> str:
    return f"{rank!r}:{seq}"


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Raises ItemError naming the cursor when it is not of the form this store hands out."""
    if not _CURSOR.match(cursor):
        raise ItemError(f"cursor: not a cursor from a previous page ({cursor[:40]!r})")
    rank, _, seq = cursor.partition(":")
    return float(rank), int(seq)


class ContentStore:
    if TYPE_CHECKING:
        clock: Callable[[], float]

        def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    # -- search ---------------------------------------------------------------------------------

    def search(
        self, query: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[SearchHit], str | None]:
        """Stored contents matching every word of `query`, best (lowest bm25) first.

        Returns (hits, next cursor or None). Raises ItemError for a cursor it did not hand out.
        """
        match = fts_query(query)
        after_rank, after_seq = decode_cursor(cursor) if cursor else (None, 0)
        if match is None:
            return [], None
        params = {"query": match, "after_rank": after_rank, "after_seq": after_seq, "limit": limit}
        with self._read() as conn:
            rows = conn.execute(C["search"], params).fetchall()
        hits = [
            SearchHit(r["item_id"], r["title"], r["url"], r["canonical_url"], r["snippet"], r["rank"])
            for r in rows
        ]
        last = rows[-1] if len(rows) == limit else None
        return hits, encode_cursor(last["rank"], last["seq"]) if last is not None else None

    # -- conditional requests -------------------------------------------------------------------

    def attach_validators(self, conn: sqlite3.Connection, claimed: Sequence[Any]) -> None:
        """Put what the last fetch of each claimed url item's URL left into payload["validators"]."""
        urls = [c.payload.get("url") for c in claimed if c.kind == "url"]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(urls), 500):
            chunk = urls[start : start + 500]
            sql = f"SELECT * FROM fetch_validators WHERE url IN ({','.join('?' * len(chunk))})"
            for row in conn.execute(sql, chunk):
                found[row["url"]] = {k: row[k] for k in ("etag", "last_modified", "item_id", "content_hash")}
        for c in claimed:
            if c.kind == "url" and c.payload.get("url") in found:
                c.payload["validators"] = found[c.payload["url"]]

    # -- feeds ----------------------------------------------------------------------------------

    def feed_add(self, url: str, interval_seconds: float | None = None) -> dict[str, Any]:
        """Subscribe to `url` (or update its interval if subscribed, and reset an error backoff so it
        is polled now); returns the feed row."""
        with self._write() as conn:
            now = self.clock()
            (feed_id,) = conn.execute(
                C["feed_insert"],
                {"id": "f_" + new_id(now), "url": url, "interval": interval_seconds, "now": now},
            ).fetchone()
            return dict(conn.execute(C["feed_get"], {"id": feed_id}).fetchone())

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
        rows = []
        with self._write() as conn:
            for key, item in entries:
                item_id = new_id(now)
                cur = conn.execute(
                    C["feed_entry_insert"], {"feed_id": feed_id, "key": key, "item_id": item_id, "now": now}
                )
                if cur.rowcount == 1:  # else: seen on an earlier poll
                    rows.append(item_row(item_id, item, None, now))
            insert_items(conn, rows, now)  # inserts and counts, as enqueue does
            added = len(rows)
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
                    "added": added,
                },
            )
        return added

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
