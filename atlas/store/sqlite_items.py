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
from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from atlas.store.itemrows import (
    ROW_DUE,
    ROW_ID,
    ROW_KEY,
    ROW_KIND,
    ROW_METADATA,
    ROW_NOW,
    ROW_PAYLOAD,
    ROW_PRIORITY,
    ROW_REQUEST_HASH,
    ROW_SOURCE,
    ROW_TRACE,
)
from atlas.store.itemrows import item_row as item_row  # re-exported: sqlite_content's path
from atlas.store.queries import load_queries

Q = load_queries("atlas.store", "queries.sql")

_ID, _KIND, _PAYLOAD = ROW_ID, ROW_KIND, ROW_PAYLOAD
_ID_OF, _KIND_OF = itemgetter(ROW_ID), itemgetter(ROW_KIND)
# The columns most batches leave empty (source, idempotency key, metadata, request hash): when
# every row's are, insert_item_plain writes them as NULL literals and `_PLAIN` binds the rest.
_NULLABLE = itemgetter(ROW_SOURCE, ROW_KEY, ROW_METADATA, ROW_REQUEST_HASH)
_ALL_NULL = (None, None, None, None)
_PLAIN = itemgetter(ROW_ID, ROW_KIND, ROW_PRIORITY, ROW_PAYLOAD, ROW_DUE, ROW_TRACE, ROW_NOW)


def insert_items(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], now: float) -> None:
    """Insert `rows` (from `item_row`) inside the caller's write transaction, add them to the
    per-(state, kind) counters and subscribe the feeds of `feed` items."""
    if not rows:
        return
    # C loops (map, Counter), not a Python loop per row: this runs on the thread that commits for
    # every request (atlas.api.groupcommit), at 1,000 rows a batch.
    kinds = Counter(map(_KIND_OF, rows))
    feeds: list[tuple[str, str, float | None, float]] = []
    if "feed" in kinds:  # rare: parsing its payload back costs nothing measurable
        for row in rows:
            if row[_KIND] == "feed":
                payload = json.loads(row[_PAYLOAD])
                feeds.append((row[_ID], payload["url"], payload.get("poll_interval_seconds"), now))
    if all(map(_ALL_NULL.__eq__, map(_NULLABLE, rows))):
        conn.executemany(Q["insert_item_plain"], map(_PLAIN, rows))
    else:
        conn.executemany(Q["insert_item"], rows)
    # Keep queue_hint (migration 0010) below every queued id: one statement per transaction.
    conn.execute(Q["lower_queue_hint"], {"id": min(map(_ID_OF, rows))})
    if feeds:
        conn.executemany(Q["subscribe_feed"], feeds)
    # Once per kind rather than by a per-row trigger (0005_enqueue_stats).
    conn.executemany(Q["count_enqueued"], kinds.items())
