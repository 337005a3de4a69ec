"""The one way items enter the SQLite items table: insert, count, subscribe.

Migration 0005 dropped the per-row insert trigger on items (it cost ~4.5 us of ~16 us per batched
item) and 0006 the feed-subscribing one, so whatever inserts items must itself add them to the
stats_items counters and subscribe the feeds of `feed` items, in the same transaction. Every
insert path (SQLiteStore.enqueue, ContentStore.feed_polled) goes through `insert_items`, so no
path can forget one of the two (issue 10: feed polls forgot the counters).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from atlas.store.itemrows import ROW_ID, ROW_KIND, ROW_PAYLOAD
from atlas.store.itemrows import item_row as item_row  # re-exported: sqlite_content's path
from atlas.store.queries import load_queries

Q = load_queries("atlas.store", "queries.sql")

_ID, _KIND, _PAYLOAD = ROW_ID, ROW_KIND, ROW_PAYLOAD


def insert_items(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], now: float) -> None:
    """Insert `rows` (from `item_row`) inside the caller's write transaction, add them to the
    per-(state, kind) counters and subscribe the feeds of `feed` items."""
    if not rows:
        return
    kinds: dict[str, int] = {}
    feeds: list[tuple[str, str, float | None, float]] = []
    for row in rows:
        kind = row[_KIND]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "feed":  # rare: parsing its payload back costs nothing measurable
            payload = json.loads(row[_PAYLOAD])
            feeds.append((row[_ID], payload["url"], payload.get("poll_interval_seconds"), now))
    conn.executemany(Q["insert_item"], rows)
    # Keep queue_hint (migration 0010) below every queued id: one statement per transaction.
    conn.execute(Q["lower_queue_hint"], {"id": min(row[_ID] for row in rows)})
    if feeds:
        conn.executemany(Q["subscribe_feed"], feeds)
    # Once per kind rather than by a per-row trigger (0005_enqueue_stats).
    conn.executemany(Q["count_enqueued"], kinds.items())
