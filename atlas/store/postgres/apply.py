"""Applying engine transitions on PostgreSQL, in the caller's transaction.

On SQLite the whole write transaction holds the database lock, so checking content owners up
front and writing afterwards is safe. Here other engines commit meanwhile, so each decision rests
on a lock or a constraint instead:
- the items are locked (FOR UPDATE, in id order) before their lease tokens are compared, so the
  reaper or another engine cannot move them under us;
- the text is stored with INSERT ... ON CONFLICT (content_hash) DO NOTHING: when it inserts
  nothing, another item owns that text and this one is its duplicate (the insert waits for a
  concurrent transaction inserting the same hash, then sees its row);
- canonical URLs are not unique, so their check-then-insert is serialised by an advisory lock per
  URL, taken for all URLs of the batch in sorted order (no deadlock between two batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atlas.store.models import Transition
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries
from atlas.store.transitions import TransitionRows, content_row

Q = load_queries("atlas.store.postgres", "queries.sql")


def clean_text(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters (SQLite's can): they are dropped from stored
    content rather than failing the transition that stores it."""
    return text.replace("\x00", "") if text else text


def _owner(conn: Conn, query: str, params: dict[str, Any]) -> str | None:
    row = conn.execute(Q[query], params).fetchone()
    return None if row is None else str(row["item_id"])


def apply_transitions(conn: Conn, transitions: Sequence[Transition], now: float) -> dict[str, str]:
    """Apply `transitions`; a stale lease token is skipped. {item id: outcome} for those applied."""
    if not transitions:
        return {}
    held = {
        r["id"]: r["lease_token"]
        for r in conn.execute(Q["lock_leases"], {"ids": [t.item_id for t in transitions]}).fetchall()
    }
    live = [t for t in transitions if held.get(t.item_id) == t.token]  # else: lease lost
    # Texts are inserted in hash order: two batches holding the same two texts cannot deadlock.
    live.sort(key=lambda t: t.result.content_hash if t.result is not None else "")
    urls = sorted({t.result.canonical_url for t in live if t.result is not None and t.result.canonical_url})
    for url in urls:
        conn.execute(Q["lock_url"], {"url": url})
    out = TransitionRows(now)
    for t in live:
        original = None
        if t.result is not None:
            r = t.result
            original = _owner(conn, "content_owner_by_hash", {"hash": r.content_hash})
            if original is None and r.canonical_url:
                original = _owner(conn, "content_owner_by_url", {"url": r.canonical_url})
            if original is None and r.text:  # empty text: a 304 whose content has since been deleted
                row = conn.execute(Q["insert_content"], content_row(t.item_id, r, now, clean_text)).fetchone()
                if row is None:  # stored meanwhile by a concurrent transaction
                    original = _owner(conn, "content_owner_by_hash", {"hash": r.content_hash})
        out.add(t, original if original not in (None, t.item_id) else None)
    cur = conn.cursor()
    for query, rows in out.batches():
        if rows:
            cur.executemany(Q[query], rows)
    return out.applied
