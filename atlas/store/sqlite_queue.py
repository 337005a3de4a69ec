"""The queue on the SQLite store (mixed into SQLiteStore): enqueue, claims, applying transitions
and reaping expired leases. Item reads, heartbeats and release are atlas.store.itemreads; the rows
a transition writes, atlas.store.transitions.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from atlas.store.dialect import chunks
from atlas.store.itemrows import ROW_ID, ROW_REQUEST_HASH, claimed_from_tuple, prepare_items, row_to_claimed
from atlas.store.models import (
    HANDOFF,
    Claimed,
    ClaimSettled,
    ContentResult,
    EnqueueResult,
    NewItem,
    PreparedItems,
    Settle,
    SettledDocument,
    Transition,
)
from atlas.store.queries import NamedSQL, load_queries
from atlas.store.sqlite_items import insert_items, insert_named
from atlas.store.transitions import TransitionRows, reap_expired

Q = load_queries("atlas.store", "queries.sql")
# Keys looked up per statement: under SQLite's limit of parameters (32766; 999 before 3.32).
IN_CHUNK = 500


class SQLiteQueue:
    if TYPE_CHECKING:
        clock: Callable[[], float]
        sql: Mapping[str, str]
        _handed: dict[str, int]
        _handed_lock: threading.Lock

        def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def attach_validators(self, conn: sqlite3.Connection, claimed: Sequence[Any]) -> None: ...

    handed_tsvector = False  # HandsOff: SQLite's FTS5 index makes its own words

    # -- enqueue --------------------------------------------------------------------------------

    def prepare(self, items: Sequence[NewItem]) -> PreparedItems:
        """Ids and rows for `items`, built outside any transaction (see PreparedItems)."""
        return prepare_items(items, self.clock())

    def enqueue(self, items: Sequence[NewItem] | PreparedItems) -> list[EnqueueResult]:
        prepared = items if isinstance(items, PreparedItems) else self.prepare(items)
        now = self.clock()
        results: list[EnqueueResult | None] = [None] * len(prepared.items)
        rows: list[tuple[Any, ...]] = []  # positional: the hot path of every accept, measured
        keyed: dict[str, int] = {}
        with self._write() as conn:
            keys = [it.idempotency_key for it in prepared.items if it.idempotency_key is not None]
            existing: dict[str, tuple[str, str | None]] = {}
            for chunk in chunks(keys, IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(Q["idempotency_lookup"].format(marks), chunk):
                    existing[row[0]] = (row[1], row[2])
            if not keys:  # the common batch: every row goes in as built
                rows = list(prepared.rows)
                results = [EnqueueResult(r[ROW_ID], True, r[ROW_REQUEST_HASH]) for r in rows]
            else:
                for index, (item, built) in enumerate(zip(prepared.items, prepared.rows, strict=True)):
                    key = item.idempotency_key
                    if key is not None:
                        if key in existing:
                            results[index] = EnqueueResult(existing[key][0], False, existing[key][1])
                            continue
                        if key in keyed:  # repeated within this batch: one item
                            first = rows[keyed[key]]
                            results[index] = EnqueueResult(first[ROW_ID], False, first[ROW_REQUEST_HASH])
                            continue
                        keyed[key] = len(rows)
                    rows.append(built)
                    results[index] = EnqueueResult(built[ROW_ID], True, item.request_hash)
            insert_items(conn, rows, now)
        return [r for r in results if r is not None]

    def recount_items(self) -> None:
        """Rebuild the per-(state, kind) counters from the rows, for items inserted by hand."""
        with self._write() as conn:
            conn.execute(Q["recount_items_zero"])
            conn.execute(Q["recount_items"])

    # -- leases (item reads, heartbeat, release: atlas.store.itemreads) --------------------------

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        now = self.clock()
        token = uuid.uuid4().hex
        with self._write() as conn:
            rows = conn.execute(
                Q["claim"],
                {"owner": owner, "token": token, "until": now + lease_seconds, "now": now, "limit": limit},
            ).fetchall()
            if rows:
                # The oldest-queued walk (migration 0010) starts at the hint: moved past what this
                # claim took, the API's sampler and the exporter walk a few rows, not every item
                # finished since the lease reaper last moved it (a third of `atlas up`'s samples).
                conn.execute(Q["advance_queue_hint"])
        claimed = [row_to_claimed(r, token) for r in rows]
        if any(c.kind == "url" for c in claimed):
            with self._read() as conn:
                self.attach_validators(conn, claimed)
        return claimed

    def claim_settling(
        self, owner: str, limit: int, lease_seconds: float, settle: Settle, lease_limit: int | None = None
    ) -> ClaimSettled:
        now = self.clock()
        token = uuid.uuid4().hex
        with self._handed_lock:
            skip = orjson.dumps(list(self._handed.values())).decode()
        with self._write() as conn:
            due = conn.execute(Q["due"], {"now": now, "limit": limit, "skip": skip})
            due.row_factory = None  # plain tuples of CLAIMED_COLUMNS, then the rowid
            rows = due.fetchall()
            chosen = [claimed_from_tuple(r[:-1], token) for r in rows]
            leased: list[Claimed] = []
            settled: list[tuple[Transition, Claimed]] = []
            handed: list[Claimed] = []
            handed_rowids: dict[str, int] = {}
            for item, row in zip(chosen, rows, strict=True):
                transition = settle(item)
                if transition is None:
                    leased.append(item)
                elif transition is HANDOFF:
                    handed.append(item)
                    handed_rowids[item.id] = row[-1]
                else:
                    settled.append((transition, item))
            del leased[len(leased) if lease_limit is None else lease_limit :]  # the rest stay queued
            until = now + lease_seconds
            for chunk in chunks([c.id for c in leased], IN_CHUNK):
                sql = Q["lease_ids"].format(",".join("?" * len(chunk)))
                conn.execute(sql, [owner, token, until, now, *chunk])
            # The settled never held a lease: their rows go from queued (TransitionRows.settling).
            applied = self._write_transitions(
                conn, [t for t, _ in settled], now, settling=True, kinds=[c.kind for _, c in settled]
            )
            if leased or settled:  # (handed only: nothing written, nothing to commit; settle_handed moves it)
                conn.execute(Q["advance_queue_hint"])  # as claim() does
        if any(c.kind == "url" for c in leased):
            with self._read() as conn:
                self.attach_validators(conn, leased)
        # Out of the next claims until settle_handed or forget_handed; only now, so a claim that
        # raised never leaves its caller a handed item it was not told of.
        if handed_rowids:
            with self._handed_lock:
                self._handed.update(handed_rowids)
        return ClaimSettled(leased, settled, applied, len(chosen), handed)

    def settle_handed(
        self, docs: Sequence[SettledDocument], handed: Mapping[str, tuple[int, str]]
    ) -> dict[str, str]:
        """Write handed documents' results (`handed`: item id -> (attempts it was handed at,
        kind)), each only if its row is as it was handed: still queued, unleased, at those
        attempts (else another engine took it meanwhile, and the result is dropped). The write of
        _write_transitions for settled documents, without its general machinery: the worker made
        the values, and every one is stored or a duplicate. Returns {item id: outcome} of those
        written; every one of `docs` stops being handed, written or not."""
        try:
            now = self.clock()
            try:  # nearly always every row is as handed: the update's condition checks it
                with self._write() as conn:
                    return _write_settled(conn, docs, handed, now, checked=False)
            except _Changed:
                pass  # undone: again, with only the rows still as handed
            with self._write() as conn:
                found: dict[str, tuple[int, str]] = {}
                for chunk in chunks([d[0] for d in docs], IN_CHUNK):
                    sql = Q["handed_unchanged"].format(",".join("?" * len(chunk)))
                    for item_id, at, kind in conn.execute(sql, chunk):
                        found[item_id] = (at, kind)
                live = [d for d in docs if found.get(d[0]) == handed[d[0]]]
                return _write_settled(conn, live, handed, now, checked=True)
        finally:
            self.forget_handed([d[0] for d in docs])

    def forget_handed(self, item_ids: Sequence[str]) -> None:
        """Let this process's claims choose these handed items again (they were not settled)."""
        with self._handed_lock:
            for item_id in item_ids:
                self._handed.pop(item_id, None)

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        now = self.clock()
        with self._write() as conn:
            # Inside one write transaction nothing changes under us, so checking leases and
            # content hashes up front lets every write below be one executemany (a C loop).
            held = _select_in(conn, Q["leases_in"], [t.item_id for t in transitions])
            live = [t for t in transitions if held.get(t.item_id) == t.token]  # else: lease lost
            return self._write_transitions(conn, live, now)

    def _write_transitions(
        self,
        conn: sqlite3.Connection,
        live: Sequence[Transition],
        now: float,
        *,
        settling: bool = False,
        kinds: Sequence[str] = (),
    ) -> dict[str, str]:
        """Write `live` (transitions whose lease is held, or with `settling`, of items still
        queued in this transaction, `kinds` theirs); returns {item id: outcome}."""
        if not live:
            return {}
        hashes = [t.result.content_hash for t in live if t.result is not None]
        owners = _select_in(conn, Q["content_owners_by_hash_in"], hashes)
        # The same page under another spelling of its URL is a duplicate too (atlas.pipeline.dedupe).
        urls = [t.result.canonical_url for t in live if t.result is not None and t.result.canonical_url]
        url_owners = _select_in(conn, Q["content_owners_by_url_in"], urls)
        out = TransitionRows(now, settling=settling, split_done=settling)
        contents = []
        for t in live:
            duplicate_of = None
            r = t.result
            if r is not None and not r.text:
                # Empty: a 304 whose content has since been deleted. Nothing is stored, so it
                # owns nothing: a duplicate only of a stored text (as on PostgreSQL), never of
                # another empty result of this batch.
                owner = owners.get(r.content_hash) or (
                    url_owners.get(r.canonical_url) if r.canonical_url else None
                )
                duplicate_of = owner if owner != t.item_id else None
            elif r is not None:
                original = owners.setdefault(r.content_hash, t.item_id)
                if original == t.item_id and r.canonical_url:
                    original = url_owners.setdefault(r.canonical_url, t.item_id)
                    if original != t.item_id:
                        del owners[r.content_hash]  # this text was not stored after all
                if original != t.item_id:
                    duplicate_of = original
                else:
                    contents.append(content_values(t.item_id, r, now))
            out.add(t, duplicate_of)
        kind_of = dict(zip([t.item_id for t in live], kinds, strict=True)) if settling else {}
        for query, rows in out.batches():
            if query == "insert_completion":  # many rows, all plain: multi-row INSERTs
                insert_named(conn, Q[query], rows)
                continue
            cursor = conn.executemany(self.sql[query], rows)
            if settling and rows and query in ("transition", "settle_done"):
                _count_settled(conn, cursor.rowcount, rows, kind_of)
            if query == "insert_attempt" and contents:  # the order the statements always ran in
                # Indexed and counted in one statement each, after the rows (migration 0011).
                after = {"after": conn.execute(Q["contents_last_seq"]).fetchone()[0]}
                # executemany: as multi-row INSERTs (with the table's triggers) the contents cost
                # more, 157-175 against 153-157 us a settled document (store alone, 3 pairs).
                if all(map(_NO_OPTIONAL.__eq__, map(_OPTIONAL_CONTENT, contents))):
                    conn.executemany(Q["insert_content_plain"], map(PLAIN_CONTENT, contents))
                else:
                    conn.executemany(Q["insert_content"], contents)
                conn.execute(Q["index_batched_contents"], after)
                conn.execute(Q["count_batched_contents"], after)
        return out.applied

    def reap_expired(self, max_lease_expiries: int) -> int:
        with self._write() as conn:
            reaped = reap_expired(conn, Q, self.clock(), max_lease_expiries)
            # The reaper runs every few seconds while an engine drains the queue: the write
            # transaction where the oldest-queued walk's start (migration 0010) moves up.
            conn.execute(Q["advance_queue_hint"])
            return reaped

    def queue_stats(self) -> dict[str, float]:
        """Queued items, the oldest one's acceptance time (0 if none), and completions so far."""
        with self._read() as conn:
            return {
                "queued": conn.execute(Q["queued_count"]).fetchone()[0],
                "oldest_queued_at": conn.execute(Q["oldest_queued"]).fetchone()[0] or 0.0,
                "completions": conn.execute(Q["completions_seq"]).fetchone()[0],
            }


def content_values(item_id: str, r: ContentResult, now: float) -> tuple[Any, ...]:
    """insert_content's ?1..?12 for `r`: transitions.content_row's values, in the statement's
    order (SQLite keeps text as it is)."""
    text = r.text
    return (
        item_id,
        r.content_hash,
        r.content_type,
        r.title,
        text,
        r.canonical_url,
        r.language,
        r.author,
        r.published,
        r.url,
        len(text.encode("utf-8")),
        now,
    )


class _Changed(Exception):
    """A handed row is no longer as it was handed: settle_handed's first try is undone."""


def _write_settled(
    conn: sqlite3.Connection,
    docs: Sequence[SettledDocument],
    handed: Mapping[str, tuple[int, str]],
    now: float,
    *,
    checked: bool,
) -> dict[str, str]:
    """settle_handed's writes of `docs` (`handed`: id -> (attempts, kind)); raises _Changed when
    one is no longer as handed, unless `checked` (each was found so in this transaction)."""
    owners = _select_in(conn, Q["content_owners_by_hash_in"], [d[1] for d in docs])
    updates, contents, completions, applied = [], [], [], {}
    plain = True
    for item_id, digest, text, content_type, title, url, _, _, timings, _ in docs:
        owner = owners.setdefault(digest, item_id)
        state = "done" if owner == item_id else "duplicate"
        if state == "done":
            size = len(text.encode("utf-8"))
            contents.append(
                (item_id, digest, content_type, title, text, None, None, None, None, url, size, now)
            )
            plain = plain and title is None and url is None
        updates.append(
            (state, digest, None if state == "done" else owner, timings, now, item_id, handed[item_id][0])
        )
        completions.append((item_id, state, now))
        applied[item_id] = state
    updated = conn.executemany(Q["settle_handed"], updates).rowcount
    if updated != len(updates):
        if not checked:
            raise _Changed
        raise RuntimeError(f"settling updated {updated} of {len(updates)} queued rows")  # under our lock
    moved = Counter((state, handed[item_id][1]) for item_id, state in applied.items())
    out_of_queued = Counter[str]()
    for (_, kind), n in moved.items():
        out_of_queued[kind] += n
    conn.executemany(Q["count_settled_from"], out_of_queued.items())
    conn.executemany(Q["count_settled_to"], [(state, kind, n) for (state, kind), n in moved.items()])
    if contents:
        after = {"after": conn.execute(Q["contents_last_seq"]).fetchone()[0]}
        if plain:
            conn.executemany(Q["insert_content_plain"], map(PLAIN_CONTENT, contents))
        else:
            conn.executemany(Q["insert_content"], contents)
        conn.execute(Q["index_batched_contents"], after)
        conn.execute(Q["count_batched_contents"], after)
    conn.executemany(Q["insert_completion_settled"], completions)
    conn.execute(Q["advance_queue_hint"])  # as claim() does
    return applied


# insert_content_plain: the values that are NULL in it, and its parameters, of content_values.
_OPTIONAL_CONTENT = itemgetter(3, 5, 6, 7, 8, 9)
_NO_OPTIONAL = (None,) * 6
PLAIN_CONTENT = itemgetter(0, 1, 2, 4, 10, 11)


def _count_settled(
    conn: sqlite3.Connection, updated: int, rows: list[dict[str, Any]], kinds: dict[str, str]
) -> None:
    """Count in stats_items what settling's transition rows (`rows`; `kinds`: item id -> kind)
    changed, one statement per (state, kind): their update flipped `counted`, so the per-row
    trigger did not (migration 0012). Every row was queued and chosen in this transaction under
    its write lock, so every one was updated; anything else is a bug, and raising undoes the claim."""
    if updated != len(rows):
        raise RuntimeError(f"settling updated {updated} of {len(rows)} queued rows")
    moved = Counter((row["state"], kinds[row["id"]]) for row in rows if row["state"] != "queued")
    if moved:
        out_of_queued = Counter[str]()
        for (_, kind), n in moved.items():
            out_of_queued[kind] += n
        conn.executemany(Q["count_settled_from"], out_of_queued.items())
        conn.executemany(Q["count_settled_to"], [(state, kind, n) for (state, kind), n in moved.items()])


def _select_in(conn: sqlite3.Connection, sql: NamedSQL, keys: Sequence[str]) -> dict[str, Any]:
    """{first column: second column} of `sql`'s rows for `keys`, its IN list ({}) filled chunk by chunk."""
    found: dict[str, Any] = {}
    for chunk in chunks(keys, IN_CHUNK):
        for row in conn.execute(sql.format(",".join("?" * len(chunk))), chunk):
            found[row[0]] = row[1]
    return found
