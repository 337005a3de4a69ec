"""The PostgreSQL store: the Store protocol for many API and engine processes on many hosts.

Where SQLite serialises every writer on one lock, here transactions run concurrently, so each
operation that reads and then writes takes the row locks it relies on: claims skip rows another
engine is taking (FOR UPDATE SKIP LOCKED), `apply` locks the items it finishes (in id order),
content de-duplication rests on the unique content hash (ON CONFLICT) and an advisory lock per
canonical URL. Enqueue NOTIFYs, so an idle engine blocked in `wait_for_work` starts at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson

from atlas.store.dlq import DLQStore, dlq_groups_query
from atlas.store.itemreads import ItemReadsStore
from atlas.store.itemrows import (
    ROW_ID,
    ROW_KEY,
    ROW_KIND,
    ROW_NOW,
    ROW_PAYLOAD,
    item_row,
    prepare_items,
    row_to_claimed,
)
from atlas.store.models import (
    HANDOFF,
    Claimed,
    ClaimSettled,
    ContentResult,
    DLQFilter,
    EnqueueResult,
    NewItem,
    PreparedItems,
    Settle,
    SettledDocument,
    Transition,
)
from atlas.store.postgres.connection import Conn, Connections
from atlas.store.postgres.content import C, ContentStore
from atlas.store.postgres.dialect import POSTGRES
from atlas.store.postgres.ops import PgOpsStore
from atlas.store.queries import load_queries
from atlas.store.sharedstate import KeysAndStateStore
from atlas.store.transitions import reap_expired

Q = load_queries("atlas.store.postgres", "queries.sql")
# Counter delta rows are folded back into one row per key when compacting (see 0001_init.sql).
COMPACT_LOCK_KEY = 0x41746C6174  # pg_try_advisory_xact_lock: one compactor at a time


# Batches of this many key-less items or more go in by COPY; below, COPY's own setup costs more.
COPY_MIN_ROWS = 20
# The copy_items columns' types, in its order: a binary COPY sends each value in its column's type.
COPY_TYPES = ["text", "text", "text", "text", "int4", "text", "text", "float8", "text", "text", "float8"]
COPY_TYPES += ["text", "float8"]  # state, updated_at
# insert_items' array parameters, in item_row's column order.
_ROW_PARAMS = (
    "ids",
    "kinds",
    "sources",
    "keys",
    "priorities",
    "payloads",
    "metadatas",
    "dues",
    "traces",
    "rhashes",
    "nows",
)


class PostgresStore(ItemReadsStore, ContentStore, KeysAndStateStore, DLQStore, PgOpsStore):
    """Store protocol on a PostgreSQL database. Thread-safe: every call borrows a pooled connection."""

    dialect = POSTGRES
    concurrent_writers = True  # row locks: transactions write side by side
    sql = {**Q, **C}
    # HandsOff: the workers make each handed document's tsvector (atlas.store.tsvector), off the
    # supervisor's process, whose store threads then only wait for the server.
    handed_tsvector = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        clock: Callable[[], float] = time.time,
        migrate: bool = True,
    ) -> None:
        """Connect to `url`; with `migrate` apply the shipped migrations, without it raise
        DatabaseNotReady unless the schema is the one this Atlas ships. Raises StoreError when the
        database cannot be reached."""
        self.url = url
        self.clock = clock
        # Handed out by claim_settling (HANDOFF), not yet settle_handed or forgotten: out of this
        # process's claims (atlas.engine.handoff).
        self._handed: set[str] = set()
        self._handed_lock = threading.Lock()
        self.db = Connections(url, pool_size=pool_size)
        self.query_timings = self.db.query_timings  # exported by watch_store_locks
        self.migrations_applied = 0
        try:
            if migrate:
                self.migrations_applied = self.db.migrate()
            else:
                self.db.check_schema()
        except BaseException:
            self.db.close()
            raise

    def _write(self) -> AbstractContextManager[Conn]:
        return self.db.transaction()

    _read = _write

    def close(self) -> None:
        self.db.close()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def migrate(self) -> int:
        return self.db.migrate()

    def wait_for_work(self, timeout: float) -> bool:
        """Block until an enqueue commits (True) or `timeout` seconds pass (False)."""
        return self.db.wait_for_notify(timeout)

    # -- enqueue --------------------------------------------------------------------------------

    def prepare(self, items: Sequence[NewItem]) -> PreparedItems:
        """Ids and rows for `items`, built outside any transaction (see PreparedItems)."""
        return prepare_items(items, self.clock())

    def enqueue(self, items: Sequence[NewItem] | PreparedItems) -> list[EnqueueResult]:
        prepared = items if isinstance(items, PreparedItems) else self.prepare(items)
        results: list[EnqueueResult] = []
        rows: list[tuple[Any, ...]] = []
        keyed: dict[str, tuple[str, str | None]] = {}
        with self._write() as conn:
            keys = [it.idempotency_key for it in prepared.items if it.idempotency_key is not None]
            existing = (
                {
                    r["idempotency_key"]: (r["id"], r["request_hash"])
                    for r in conn.execute(Q["items_by_key"], {"keys": keys}).fetchall()
                }
                if keys
                else {}
            )
            for item, row in zip(prepared.items, prepared.rows, strict=True):
                key = item.idempotency_key
                if key is not None and key in existing:
                    results.append(EnqueueResult(existing[key][0], False, existing[key][1]))
                    continue
                if key is not None and key in keyed:  # repeated within this batch: one item
                    results.append(EnqueueResult(keyed[key][0], False, keyed[key][1]))
                    continue
                item_id = row[ROW_ID]
                if key is not None:
                    keyed[key] = (item_id, item.request_hash)
                rows.append(row)
                results.append(EnqueueResult(item_id, True, item.request_hash))
            inserted = self._insert_rows(conn, rows)
            lost = {row[ROW_KEY] for row in rows if row[ROW_KEY] is not None and row[ROW_ID] not in inserted}
            if lost:  # another transaction inserted these keys since we looked: its items stand
                found = {
                    r["idempotency_key"]: EnqueueResult(r["id"], False, r["request_hash"])
                    for r in conn.execute(Q["items_by_key"], {"keys": list(lost)}).fetchall()
                }
                key_of = {item_id: key for key, (item_id, _) in keyed.items() if key in lost}
                results = [found[key_of[r.id]] if r.id in key_of else r for r in results]
        return results

    def _insert_items(
        self, conn: Conn, rows: Sequence[tuple[str, NewItem, str | None]], now: float
    ) -> set[str]:
        """Insert (id, item, idempotency key) rows in the caller's transaction (see _insert_rows)."""
        return self._insert_rows(conn, [item_row(item_id, item, key, now) for item_id, item, key in rows])

    def _insert_rows(self, conn: Conn, rows: Sequence[tuple[Any, ...]]) -> set[str]:
        """Insert item rows (atlas.store.itemrows item_row) in the caller's transaction, subscribe
        the feeds of `feed` items and notify listeners; returns the ids inserted. (Counting is the
        statement trigger's job here, unlike on SQLite.)"""
        if not rows:
            return set()
        if len(rows) >= COPY_MIN_ROWS and all(row[ROW_KEY] is None for row in rows):
            # No idempotency key, so nothing can conflict (ids are random): COPY, the cheapest
            # way in (bench/pg/ingest.py's floor). The counters' statement trigger fires for it too.
            with conn.cursor().copy(Q["copy_items"]) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row((*row, "queued", row[ROW_NOW]))
            inserted = {row[ROW_ID] for row in rows}
        else:
            # One array per column, in item_row's order: the statement unnests them into rows.
            columns = [list(column) for column in zip(*rows, strict=True)]  # psycopg: lists are arrays
            params = dict(zip(_ROW_PARAMS, columns, strict=True))
            inserted = {r["id"] for r in conn.execute(Q["insert_items"], params).fetchall()}
        feeds = [
            {
                "id": row[ROW_ID],
                "url": payload["url"],
                "interval": payload.get("poll_interval_seconds"),
                "now": row[ROW_NOW],
            }
            for row in rows
            if row[ROW_KIND] == "feed" and row[ROW_ID] in inserted
            for payload in (json.loads(row[ROW_PAYLOAD]),)  # rare: parsing it back costs nothing
        ]
        if feeds:
            conn.cursor().executemany(Q["subscribe_feed"], feeds)
        if inserted:
            conn.execute(Q["notify"])
        return inserted

    def recount_items(self) -> None:
        """Rebuild the per-(state, kind) counters from the rows."""
        with self._write() as conn:
            conn.execute("LOCK TABLE items IN SHARE MODE")  # no transition counted twice or lost
            conn.execute(Q["recount_items_zero"])
            conn.execute(Q["recount_items"])

    def compact_counters(self) -> bool:
        """Fold the counters' delta rows into one row per key; False if another process is at it."""
        with self._write() as conn:
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (COMPACT_LOCK_KEY,)).fetchone()
            if not row or not row["ok"]:
                return False
            for name in ("compact_items", "compact_dlq", "compact_contents", "compact_completions"):
                conn.execute(Q[name])
        return True

    # -- reads (the rest: atlas.store.itemreads) ------------------------------------------------

    def queue_stats(self) -> dict[str, float]:
        """Queued items, the oldest one's acceptance time (0 if none), and completions so far."""
        with self._read() as conn:
            return {
                "queued": float(_first(conn, Q["queued_count"]) or 0),
                "oldest_queued_at": float(_first(conn, Q["oldest_queued"]) or 0.0),
                "completions": float(_first(conn, Q["completions_seq"]) or 0),
            }

    # -- leases ---------------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        now = self.clock()
        token = uuid.uuid4().hex
        with self._write() as conn:
            conn.execute(Q["commit_without_flush"])  # see queries.sql: a lost claim loses nothing
            conn.execute(Q["claim_in_due_order"])  # see queries.sql: never a sort of the queue
            rows = conn.execute(
                Q["claim"],
                {"owner": owner, "token": token, "until": now + lease_seconds, "now": now, "limit": limit},
            ).fetchall()
            # UPDATE ... RETURNING keeps no order: put the batch in claim order again.
            rows.sort(key=lambda r: (-r["priority"], r["next_attempt_at"], r["id"]))
            claimed = [row_to_claimed(r, token) for r in rows]
            if any(c.kind == "url" for c in claimed):
                self.attach_validators(conn, claimed)
        return claimed

    def claim_settling(
        self, owner: str, limit: int, lease_seconds: float, settle: Settle, lease_limit: int | None = None
    ) -> ClaimSettled:
        from atlas.store.postgres.apply import apply_transitions

        now = self.clock()
        token = uuid.uuid4().hex
        with self._handed_lock:
            skip = list(self._handed)
        with self._write() as conn:  # durable: it may record completions
            conn.execute(Q["claim_in_due_order"])  # see queries.sql: never a sort of the queue
            rows = conn.execute(Q["due_locked"], {"now": now, "limit": limit, "skip": skip}).fetchall()
            leased: list[Claimed] = []
            settled: list[tuple[Transition, Claimed]] = []
            handed: list[Claimed] = []
            for item in (row_to_claimed(r, token) for r in rows):
                transition = settle(item)
                if transition is None:
                    leased.append(item)
                elif transition is HANDOFF:  # stays queued and unleased: its lock ends with this
                    handed.append(item)
                else:
                    settled.append((transition, item))
            # Past the lease limit the rest stay queued (their row locks end with the transaction).
            del leased[len(leased) if lease_limit is None else lease_limit :]
            if leased:
                params = {"owner": owner, "token": token, "until": now + lease_seconds, "now": now}
                conn.execute(Q["lease_ids"], {**params, "ids": [c.id for c in leased]})
            # Chosen and locked (FOR UPDATE) by this transaction, still queued: one row version
            # each, where leasing them first wrote two.
            applied = apply_transitions(conn, [t for t, _ in settled], now, settling=True)
            if any(c.kind == "url" for c in leased):
                self.attach_validators(conn, leased)
        # Out of the next claims until settle_handed or forget_handed; only now, so a claim that
        # raised never leaves its caller a handed item it was not told of. (A claim running
        # meanwhile on another thread may still choose one: settle_handed then finds it taken.)
        if handed:
            with self._handed_lock:
                self._handed.update(i.id for i in handed)
        return ClaimSettled(leased, settled, applied, len(rows), handed)

    def settle_handed(
        self, docs: Sequence[SettledDocument], handed: Mapping[str, tuple[int, str]]
    ) -> dict[str, str]:
        """Write handed documents' results (`handed`: item id -> (attempts it was handed at,
        kind)), each only if its row is as it was handed: still queued, unleased, at those
        attempts (else another claim took it meanwhile, and the result is dropped); the rows are
        locked first, then written as claim_settling writes what it settles. {item id: outcome}
        of those written; every one of `docs` stops being handed, written or not."""
        from atlas.store.postgres.apply import apply_transitions

        try:
            now = self.clock()
            with self._write() as conn:
                ids = sorted(d[0] for d in docs)  # locked in id order: no deadlock with a claim's
                found = {r["id"]: r["attempts"] for r in conn.execute(Q["lock_handed"], {"ids": ids})}
                live = [d for d in docs if d[0] in found and found[d[0]] == handed[d[0]][0]]
                transitions = [_settled_transition(d) for d in live]
                tsvectors = {d[0]: d[9] for d in live if d[9] is not None}
                return apply_transitions(conn, transitions, now, settling=True, tsvectors=tsvectors)
        finally:
            self.forget_handed([d[0] for d in docs])

    def forget_handed(self, item_ids: Sequence[str]) -> None:
        """Let this process's claims choose these handed items again (they were not settled)."""
        with self._handed_lock:
            self._handed.difference_update(item_ids)

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        from atlas.store.postgres.apply import apply_transitions

        with self._write() as conn:
            return apply_transitions(conn, transitions, self.clock())

    def reap_expired(self, max_lease_expiries: int) -> int:
        with self._write() as conn:
            n = reap_expired(conn, Q, self.clock(), max_lease_expiries)
            if n:
                self._wake(conn)
        # The reaper runs every few seconds in each engine: a natural moment to fold counters.
        self.compact_counters()
        return n

    def _wake(self, conn: Conn) -> None:
        conn.execute(Q["notify"])

    # -- dead-letter queue (atlas.store.dlq) ------------------------------------------------------

    def _dlq_groups_query(self, flt: DLQFilter) -> tuple[str, dict[str, Any]]:
        return dlq_groups_query(flt, POSTGRES, lambda select: f"ARRAY({select})")

    def _sample_ids(self, value: Any) -> list[str]:
        return list(value)


def _first(conn: Conn, sql: str, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else next(iter(row.values()))


def _settled_transition(doc: SettledDocument) -> Transition:
    """The transition claim_settling writes for a document it settles (atlas.engine.handoff)."""
    item_id, digest, text, content_type, title, url, _, _, timings, _ = doc
    result = ContentResult(content_hash=digest, text=text, content_type=content_type, title=title, url=url)
    return Transition(item_id, "", "done", "done", result=result, timings=orjson.loads(timings))
