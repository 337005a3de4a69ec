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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from atlas.store.models import Transition
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries
from atlas.store.transitions import TransitionRows, content_row
from atlas.store.tsvector import TSVector, tsvector

Q = load_queries("atlas.store.postgres", "queries.sql")

# The array parameters of the *_batch statements (queries.sql), named as transitions.py's rows.
TRANSITION_COLUMNS = (
    "id", "token", "from_state", "state", "attempts_inc", "deaths_inc", "isolate", "next_attempt_at",
    "error_stage", "error_class", "error_message", "error_host", "dead_reason", "content_hash",
    "duplicate_of", "timings", "done_at",
)  # fmt: skip
NUMERIC: dict[str, Callable[[Any], Any]] = {
    "attempts_inc": int, "deaths_inc": int, "isolate": int, "next_attempt_at": float, "done_at": float,
    "bytes": int,
}  # fmt: skip
ATTEMPT_COLUMNS = ("id", "outcome", "error_stage", "error_class", "error_message", "error_host")
COMPLETION_COLUMNS = ("id", "outcome", "token")
CONTENT_COLUMNS = (
    "id", "content_hash", "content_type", "title", "text", "canonical_url", "language", "author",
    "published", "url", "bytes",
)  # fmt: skip


def clean_text(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters (SQLite's can): they are dropped from stored
    content rather than failing the transition that stores it."""
    return text.replace("\x00", "") if text else text


def _owners(conn: Conn, query: str, keys: Sequence[str]) -> dict[str, str]:
    """{hash or URL: owning item id} for `keys`, in one round trip."""
    if not keys:
        return {}
    return {str(r["key"]): str(r["item_id"]) for r in conn.execute(Q[query], {"keys": list(keys)}).fetchall()}


def _decide(
    pending: Sequence[Transition], by_hash: dict[str, str], by_url: dict[str, str]
) -> tuple[dict[str, str | None], list[Transition]]:
    """What the one-by-one check-then-insert would decide for `pending` (in order), knowing the
    owners in `by_hash`/`by_url` and assuming every text it stores goes in: {item id: owner or
    None}, and the transitions whose text to insert. The maps learn the planned inserts, so a text
    or canonical URL repeated within the batch is owned by its first item, as before."""
    decided: dict[str, str | None] = {}
    inserts: list[Transition] = []
    for t in pending:
        r = t.result
        assert r is not None
        original = by_hash.get(r.content_hash)
        if original is None and r.canonical_url:
            original = by_url.get(r.canonical_url)
        if original is None and r.text:  # empty text: a 304 whose content has since been deleted
            inserts.append(t)
            by_hash[r.content_hash] = t.item_id
            if r.canonical_url:
                by_url.setdefault(r.canonical_url, t.item_id)
        decided[t.item_id] = original
    return decided, inserts


def columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The parameter dicts `rows` as one list per name in `names` (psycopg sends a list as an
    array), for the statements that unnest a whole batch. Numbers are made one type per column:
    psycopg cannot send a list that mixes ints and floats (a time given as 5 beside 5.5)."""
    out: dict[str, list[Any]] = {}
    for name in names:
        values = [row[name] for row in rows]
        cast = NUMERIC.get(name)
        out[name] = values if cast is None else [None if v is None else cast(v) for v in values]
    return out


def _insert_contents(
    conn: Conn, inserts: Sequence[Transition], now: float, tsvectors: Mapping[str, bytes]
) -> set[str]:
    """Insert the texts of `inserts` in one statement; returns the item ids whose text went in
    (the rest were stored meanwhile by a concurrent transaction). `tsvectors`: those a worker
    made already (by item id); the rest are made here."""
    if not inserts:
        return set()
    rows = [content_row(t.item_id, t.result, now, clean_text) for t in inserts if t.result is not None]
    params: dict[str, Any] = columns(rows, CONTENT_COLUMNS)
    # atlas.store.tsvector: not the server's work (a worker's, or this thread's)
    params["tsv"] = [
        TSVector(tsvectors[r["id"]]) if r["id"] in tsvectors else tsvector(r["title"], r["text"])
        for r in rows
    ]
    params["now"] = now
    return {str(r["item_id"]) for r in conn.execute(Q["insert_content_batch"], params).fetchall()}


def _originals(
    conn: Conn, live: Sequence[Transition], now: float, tsvectors: Mapping[str, bytes]
) -> dict[str, str | None]:
    """{item id: the item that already owns its text, or None} for the live transitions with a
    result, storing the new texts: one owner lookup per kind and one pipelined insert per batch,
    where it was two round trips per document (issue 18). Decides exactly as checking and
    inserting one transition at a time in `live`'s order would."""
    pending = [t for t in live if t.result is not None]
    if not pending:
        return {}
    by_hash = _owners(
        conn, "content_owners_by_hash", sorted({t.result.content_hash for t in pending if t.result})
    )
    urls = {t.result.canonical_url for t in pending if t.result and t.result.canonical_url}
    by_url = _owners(conn, "content_owners_by_url", sorted(urls))
    originals: dict[str, str | None] = {}
    while pending:
        decided, inserts = _decide(pending, by_hash, by_url)
        lost = {t.item_id for t in inserts} - _insert_contents(conn, inserts, now, tsvectors)
        if not lost:
            originals.update(decided)
            break
        # Rare: a concurrent transaction stored some of these texts first (the insert waited for
        # it). Their items are its duplicates; what was decided against them is decided again, in
        # order, against the owner found, and so is any later transition that relied on them.
        for key, owner in _owners(
            conn,
            "content_owners_by_hash",
            sorted({t.result.content_hash for t in inserts if t.item_id in lost and t.result}),
        ).items():
            by_hash[key] = owner
        by_url = {url: owner for url, owner in by_url.items() if owner not in lost}
        again = [t for t in pending if t.item_id in lost or decided[t.item_id] in lost]
        originals.update({i: o for i, o in decided.items() if i not in {t.item_id for t in again}})
        pending = again
    return originals


def apply_transitions(
    conn: Conn,
    transitions: Sequence[Transition],
    now: float,
    *,
    settling: bool = False,
    tsvectors: Mapping[str, bytes] | None = None,
) -> dict[str, str]:
    """Apply `transitions`; a stale lease token is skipped. {item id: outcome} for those applied.
    `settling`: they are of items still queued that this transaction chose and locked
    (claim_settling, settle_handed), never leased; there is no lease to check. `tsvectors`: the
    search index's tsvectors a worker made, by item id (atlas.store.tsvector)."""
    if not transitions:
        return {}
    if settling:
        held = {t.item_id: t.token for t in transitions}
    else:
        held = {
            r["id"]: r["lease_token"]
            for r in conn.execute(Q["lock_leases"], {"ids": [t.item_id for t in transitions]}).fetchall()
        }
    # else: lease lost. An item listed twice is applied once (the first), as when each row was
    # its own UPDATE and the second found the lease already cleared; its completion is recorded once.
    first: dict[str, Transition] = {}
    for t in transitions:
        if held.get(t.item_id) == t.token:
            first.setdefault(t.item_id, t)
    live = list(first.values())
    # Texts are inserted in hash order: two batches holding the same two texts cannot deadlock.
    live.sort(key=lambda t: t.result.content_hash if t.result is not None else "")
    urls = sorted({t.result.canonical_url for t in live if t.result is not None and t.result.canonical_url})
    if urls:  # one statement; unnest keeps the array's (sorted) order
        conn.execute(Q["lock_urls"], {"urls": urls})
    originals = _originals(conn, live, now, tsvectors or {})
    out = TransitionRows(now, settling=settling)
    for t in live:
        original = originals.get(t.item_id)
        out.add(t, original if original not in (None, t.item_id) else None)
    _write_rows(conn, out)
    return out.applied


def _write_rows(conn: Conn, out: TransitionRows) -> None:
    """Write what `out` gathered: one statement per table for the whole batch (issue 18: one
    statement per row fired the counters' statement triggers once per row, and cost a server-side
    execution each), validators one by one (rare, and a URL may repeat within a batch)."""
    now = {"now": out.now}
    if out.transition:
        conn.execute(Q["transition_batch"], {**columns(out.transition, TRANSITION_COLUMNS), **now})
    if out.insert_attempt:
        conn.execute(Q["insert_attempt_batch"], {**columns(out.insert_attempt, ATTEMPT_COLUMNS), **now})
    if out.insert_completion:
        conn.execute(
            Q["insert_completion_batch"], {**columns(out.insert_completion, COMPLETION_COLUMNS), **now}
        )
    if out.validators_upsert:
        conn.cursor().executemany(Q["validators_upsert"], out.validators_upsert)
