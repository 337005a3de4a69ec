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

from atlas.store.models import FINAL_STATES, Transition
from atlas.store.postgres.connection import Conn
from atlas.store.postgres.rows import content_row
from atlas.store.queries import load_queries
from atlas.store.sqlite_items import to_json

Q = load_queries("atlas.store.postgres", "queries.sql")


def _owner(conn: Conn, query: str, params: dict[str, Any]) -> str | None:
    row = conn.execute(Q[query], params).fetchone()
    return None if row is None else str(row["item_id"])


def apply_transitions(conn: Conn, transitions: Sequence[Transition], now: float) -> dict[str, str]:
    """Apply `transitions`; a stale lease token is skipped. {item id: outcome} for those applied."""
    applied: dict[str, str] = {}
    if not transitions:
        return applied
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
    updates: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    finals: list[dict[str, Any]] = []
    validators: list[dict[str, Any]] = []
    for t in live:
        err, state, outcome, duplicate_of = t.error, t.state, t.outcome, None
        if t.result is not None:
            r = t.result
            original = _owner(conn, "content_owner_by_hash", {"hash": r.content_hash})
            if original is None and r.canonical_url:
                original = _owner(conn, "content_owner_by_url", {"url": r.canonical_url})
            if original is None and r.text:  # empty text: a 304 whose content has since been deleted
                row = conn.execute(Q["insert_content"], content_row(t.item_id, r, now)).fetchone()
                if row is None:  # stored meanwhile by a concurrent transaction
                    original = _owner(conn, "content_owner_by_hash", {"hash": r.content_hash})
            original = original or t.item_id
            if original != t.item_id:
                state = outcome = "duplicate"
                duplicate_of = original
            if r.url and (r.etag or r.last_modified):
                validators.append(
                    {
                        "url": r.url,
                        "etag": r.etag,
                        "last_modified": r.last_modified,
                        "item_id": original,
                        "content_hash": r.content_hash,
                        "now": now,
                    }
                )
        params = {
            "id": t.item_id,
            "token": t.token,
            "state": state,
            "attempts_inc": t.attempts_inc,
            "deaths_inc": t.deaths_inc,
            "isolate": int(t.isolate),
            "next_attempt_at": t.next_attempt_at or now,
            "error_stage": err.stage if err else None,
            "error_class": err.error_class if err else None,
            "error_message": err.message if err else None,
            "error_host": err.host if err else None,
            "dead_reason": t.dead_reason,
            "content_hash": t.result.content_hash if t.result else None,
            "duplicate_of": duplicate_of,
            "timings": to_json(t.timings),
            "done_at": now if state in FINAL_STATES else None,
            "now": now,
            "attempt_offset": 0,
            "outcome": t.outcome,
        }
        updates.append(params)
        if err is not None and t.outcome != "deferred":  # a deferral is not an attempt
            attempts.append(params)
        if state in FINAL_STATES:
            finals.append({"id": t.item_id, "outcome": state, "token": t.token, "now": now})
        applied[t.item_id] = outcome
    cur = conn.cursor()
    for query, rows in (
        ("transition", updates),
        ("insert_attempt", attempts),
        ("insert_completion", finals),
        ("validators_upsert", validators),
    ):
        if rows:
            cur.executemany(Q[query], rows)
    return applied
