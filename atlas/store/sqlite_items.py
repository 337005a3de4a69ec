"""The one way items enter the SQLite items table: insert, count, subscribe.

Migration 0005 dropped the per-row insert trigger on items (it cost ~4.5 us of ~16 us per batched
item) and 0006 the feed-subscribing one, so whatever inserts items must itself add them to the
stats_items counters and subscribe the feeds of `feed` items, in the same transaction. Every
insert path (SQLiteStore.enqueue, ContentStore.feed_polled) goes through `insert_items`, so no
path can forget one of the two (issue 10: feed polls forgot the counters).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Sequence
from functools import cache
from itertools import chain
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
from atlas.store.queries import NamedSQL, load_queries

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
        _insert_plain(conn, rows)
    else:
        conn.executemany(Q["insert_item"], rows)
    # Keep queue_hint (migration 0010) below every queued id: one statement per transaction.
    conn.execute(Q["lower_queue_hint"], {"id": min(map(_ID_OF, rows))})
    if feeds:
        conn.executemany(Q["subscribe_feed"], feeds)
    # Once per kind rather than by a per-row trigger (0005_enqueue_stats).
    conn.executemany(Q["count_enqueued"], kinds.items())


# Most rows a multi-row INSERT takes (a power of two, see insert_rows), within SQLite's limit of
# parameters a statement: 32,766, or 999 before 3.32.
MAX_ROWS = 512
MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_PARAMETER = re.compile(r"\?(\d+)")


def _insert_plain(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Plain rows by multi-row INSERTs of insert_item_plain's VALUES row (insert_rows)."""
    insert_rows(conn, Q["insert_item_plain"], list(map(_PLAIN, rows)))


def insert_rows(conn: sqlite3.Connection, sql: NamedSQL, rows: Sequence[Sequence[Any]]) -> None:
    """`rows` (each the values of `sql`'s ?1..?N) by multi-row INSERTs of `sql`'s one VALUES row,
    not executemany.

    executemany steps its statement once a row and releases and re-takes the GIL around every step:
    per row that cost ~7 us of CPU against ~3.5 us with statements of 500 rows stepped once each
    (a 1,000-row batch on the items schema, microbenchmark), and with another thread holding the
    GIL (the API's request thread; the engine's loop), each re-take waited for it (~30% of the
    commit's executemany samples under py-spy). Statements come in power-of-two sizes, so a
    connection's statement cache holds at most 10 of each whatever the row count.
    """
    start, left, most = 0, len(rows), _most_rows(sql)
    while left:
        size = most if left >= most else 1 << (left.bit_length() - 1)
        conn.execute(_values(sql, sql.name, size), list(chain.from_iterable(rows[start : start + size])))
        start, left = start + size, left - size


def insert_named(conn: sqlite3.Connection, sql: NamedSQL, rows: Sequence[dict[str, Any]]) -> None:
    """insert_rows for an INSERT with named parameters, given a dict a row."""
    numbered = sql.positional()
    if numbered is None:
        raise ValueError(f"{sql.name}: no named parameters to number")
    insert_rows(conn, NamedSQL(numbered[0], sql.name), list(map(numbered[1], rows)))


@cache
def _split(sql: str) -> tuple[str, str, str, int]:
    """(head up to VALUES, the one VALUES row, the rest (ON CONFLICT ...), its parameter count) of
    an INSERT whose VALUES row holds numbered parameters and no parentheses of its own."""
    head, _, rest = sql.rpartition("VALUES")
    rest = rest.strip()
    close = rest.find(")")
    row, tail = rest[: close + 1], rest[close + 1 :]
    if not head or not row.startswith("(") or "(" in row[1:]:
        raise ValueError(f"not an INSERT of one plain VALUES row: {sql!r}")
    return head, row, tail, len(set(_PARAMETER.findall(row)))  # ?7 may be bound twice


def _most_rows(sql: str) -> int:
    fits = MAX_PARAMETERS // _split(sql)[3]
    return min(MAX_ROWS, 1 << (fits.bit_length() - 1))


@cache
def _values(sql: str, name: str, rows: int) -> NamedSQL:
    """`sql` with `rows` VALUES rows, numbered on: (?1..?N), (?N+1..?2N), ..."""
    head, row, tail, width = _split(sql)

    def shifted(k: int) -> str:
        return _PARAMETER.sub(lambda m: f"?{int(m.group(1)) + k * width}", row)

    return NamedSQL(f"{head}VALUES {','.join(map(shifted, range(rows)))}{tail}", name)
