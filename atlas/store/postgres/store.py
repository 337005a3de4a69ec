"""The PostgreSQL store: the Store protocol for many API and engine processes on many hosts.

Where SQLite serialises every writer on one lock, here transactions run concurrently, so each
operation that reads and then writes takes the row locks it relies on: claims skip rows another
engine is taking (FOR UPDATE SKIP LOCKED), `apply` locks the items it finishes (in id order),
content de-duplication rests on the unique content hash (ON CONFLICT) and an advisory lock per
canonical URL. Enqueue NOTIFYs, so an idle engine blocked in `wait_for_work` starts at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from atlas.store.ids import new_id
from atlas.store.itemrows import row_to_item
from atlas.store.models import (
    AttemptRecord,
    Claimed,
    DLQFilter,
    DLQGroup,
    EnqueueResult,
    Item,
    NewItem,
    Transition,
)
from atlas.store.postgres.connection import Conn, Connections
from atlas.store.postgres.content import ContentStore
from atlas.store.postgres.ops import PgOpsStore
from atlas.store.postgres.rows import dlq_where
from atlas.store.postgres.shared import SharedStateStore
from atlas.store.queries import load_queries
from atlas.store.sqlite_items import to_json

Q = load_queries("atlas.store.postgres", "queries.sql")
# A page of dead items; {where} is dlq_where's clause (every value in it a parameter).
DLQ_LIST = "SELECT * FROM items WHERE {where} ORDER BY id LIMIT %(limit)s"
DLQ_SAMPLE_IDS = 5
# Counter delta rows are folded back into one row per key when compacting (see 0001_init.sql).
COMPACT_LOCK_KEY = 0x41746C6174  # pg_try_advisory_xact_lock: one compactor at a time


class PostgresStore(ContentStore, SharedStateStore, PgOpsStore):
    """Store protocol on a PostgreSQL database. Thread-safe: every call borrows a pooled connection."""

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

    def enqueue(self, items: Sequence[NewItem]) -> list[EnqueueResult]:
        now = self.clock()
        results: list[EnqueueResult] = []
        rows: list[tuple[Any, ...]] = []
        keyed: dict[str, tuple[str, str | None]] = {}
        with self._write() as conn:
            keys = [it.idempotency_key for it in items if it.idempotency_key is not None]
            existing = (
                {
                    r["idempotency_key"]: (r["id"], r["request_hash"])
                    for r in conn.execute(Q["items_by_key"], {"keys": keys}).fetchall()
                }
                if keys
                else {}
            )
            for item in items:
                key = item.idempotency_key
                if key is not None and key in existing:
                    results.append(EnqueueResult(existing[key][0], False, existing[key][1]))
                    continue
                if key is not None and key in keyed:  # repeated within this batch: one item
                    results.append(EnqueueResult(keyed[key][0], False, keyed[key][1]))
                    continue
                item_id = new_id(now)
                if key is not None:
                    keyed[key] = (item_id, item.request_hash)
                rows.append((item_id, item, key))
                results.append(EnqueueResult(item_id, True, item.request_hash))
            inserted = self._insert_items(conn, rows, now)
            lost = {key for item_id, _, key in rows if key is not None and item_id not in inserted}
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
        """Insert (id, item, idempotency key) rows in the caller's transaction, subscribe the feeds
        of `feed` items and notify listeners; returns the ids inserted. (Counting is the
        statement trigger's job here, unlike on SQLite.)"""
        if not rows:
            return set()
        params: dict[str, list[Any]] = {
            k: []
            for k in (
                "ids",
                "kinds",
                "sources",
                "keys",
                "priorities",
                "payloads",
                "metadatas",
                "dues",
                "traces",
            )
        }
        params["rhashes"] = []
        for item_id, item, key in rows:
            params["ids"].append(item_id)
            params["kinds"].append(item.kind)
            params["sources"].append(item.source)
            params["keys"].append(key)
            params["priorities"].append(item.priority)
            params["payloads"].append(to_json(item.payload))
            params["metadatas"].append(to_json(item.metadata))
            params["dues"].append(max(now, item.not_before or now))
            params["traces"].append(item.trace_context)
            params["rhashes"].append(item.request_hash)
        inserted = {r["id"] for r in conn.execute(Q["insert_items"], {**params, "now": now}).fetchall()}
        feeds = [
            {
                "id": item_id,
                "url": item.payload["url"],
                "interval": item.payload.get("poll_interval_seconds"),
                "now": now,
            }
            for item_id, item, _ in rows
            if item.kind == "feed" and item_id in inserted
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

    # -- reads ----------------------------------------------------------------------------------

    def get_item(self, item_id: str) -> Item | None:
        with self._read() as conn:
            row = conn.execute(Q["get_item"], {"id": item_id}).fetchone()
        return row_to_item(row) if row else None

    def get_content(self, item_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(Q["get_content"], {"id": item_id}).fetchone()
        return dict(row) if row else None

    def item_attempts(self, item_id: str) -> list[AttemptRecord]:
        with self._read() as conn:
            rows = conn.execute(Q["item_attempts"], {"id": item_id}).fetchall()
        return [AttemptRecord(**r) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        with self._read() as conn:
            return {(r["state"], r["kind"]): int(r["n"]) for r in conn.execute(Q["count_by_state"])}

    def completions(self) -> dict[str, int]:
        """How many final transitions each item has had (the crash test expects exactly one)."""
        with self._read() as conn:
            return {r["item_id"]: int(r["n"]) for r in conn.execute(Q["completions"])}

    def list_items(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        source: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Item]:
        """Items in id (acceptance) order after the cursor `after`, filtered."""
        clauses = ["true"]
        params: dict[str, Any] = {"limit": limit}
        for column, value in (("state", state), ("kind", kind), ("source", source), ("after", after)):
            if value is not None:
                clauses.append("id > %(after)s" if column == "after" else f"{column} = %({column})s")
                params[column] = value
        sql = f"SELECT * FROM items WHERE {' AND '.join(clauses)} ORDER BY id LIMIT %(limit)s"
        with self._read() as conn:
            return [row_to_item(r) for r in conn.execute(sql, params)]

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
            rows = conn.execute(
                Q["claim"],
                {"owner": owner, "token": token, "until": now + lease_seconds, "now": now, "limit": limit},
            ).fetchall()
            # UPDATE ... RETURNING keeps no order: put the batch in claim order again.
            rows.sort(key=lambda r: (-r["priority"], r["next_attempt_at"], r["id"]))
            claimed = [
                Claimed(
                    id=r["id"],
                    kind=r["kind"],
                    source=r["source"],
                    priority=r["priority"],
                    payload=json.loads(r["payload"]),
                    metadata=json.loads(r["metadata"]) if r["metadata"] else None,
                    attempts=r["attempts"],
                    deaths=r["deaths"],
                    isolate=bool(r["isolate"]),
                    trace_context=r["trace_context"],
                    created_at=r["created_at"],
                    token=token,
                )
                for r in rows
            ]
            if any(c.kind == "url" for c in claimed):
                self.attach_validators(conn, claimed)
        return claimed

    def heartbeat(self, owner: str, lease_seconds: float) -> int:
        with self._write() as conn:
            return conn.execute(
                Q["heartbeat"], {"owner": owner, "until": self.clock() + lease_seconds}
            ).rowcount

    def release(self, owner: str) -> int:
        with self._write() as conn:
            n = conn.execute(Q["release_owner"], {"owner": owner, "now": self.clock()}).rowcount
            if n:
                conn.execute(Q["notify"])
            return n

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        from atlas.store.postgres.apply import apply_transitions

        with self._write() as conn:
            return apply_transitions(conn, transitions, self.clock())

    def reap_expired(self, max_lease_expiries: int) -> int:
        now = self.clock()
        with self._write() as conn:
            expired = conn.execute(Q["expired_leases"], {"now": now}).fetchall()
            for row in expired:
                dead = row["lease_expiries"] + 1 >= max_lease_expiries
                message = f"lease held by {row['lease_owner']} expired (engine stopped or hung)"
                conn.execute(
                    Q["insert_attempt"],
                    {
                        "id": row["id"],
                        "attempt_offset": 1,
                        "now": now,
                        "outcome": "lease_expired",
                        "error_stage": "engine",
                        "error_class": "LeaseExpired",
                        "error_message": message,
                        "error_host": None,
                    },
                )
                conn.execute(
                    Q["reap_lease"],
                    {
                        "id": row["id"],
                        "state": "dead" if dead else "queued",
                        "now": now,
                        "message": message,
                        "dead_reason": "lease_expired" if dead else None,
                    },
                )
                if dead:
                    conn.execute(
                        Q["insert_completion"],
                        {"id": row["id"], "outcome": "dead", "token": None, "now": now},
                    )
            if expired:
                conn.execute(Q["notify"])
        # The reaper runs every few seconds in each engine: a natural moment to fold counters.
        self.compact_counters()
        return len(expired)

    # -- dead-letter queue ----------------------------------------------------------------------

    def dlq_list(self, flt: DLQFilter, limit: int = 100, after: str | None = None) -> list[Item]:
        where, params = dlq_where(flt)
        if after is not None:
            where += " AND id > %(after)s"
            params["after"] = after
        with self._read() as conn:
            rows = conn.execute(DLQ_LIST.format(where=where), {**params, "limit": limit}).fetchall()
        return [row_to_item(r) for r in rows]

    def dlq_groups(self, flt: DLQFilter, limit: int = 50) -> list[DLQGroup]:
        """Per error fingerprint (stage, class, host): size, time range, a sample message, and the
        first DLQ_SAMPLE_IDS ids in id order (a LIMITed subquery, run for the groups returned only)."""
        where, params = dlq_where(flt)
        same = (
            "last_error_stage IS NOT DISTINCT FROM g.stage"
            " AND last_error_class IS NOT DISTINCT FROM g.error_class"
            " AND last_error_host IS NOT DISTINCT FROM g.host"
        )
        # NULLS FIRST: the order SQLite gives the same groups.
        order = "g.n DESC, g.stage NULLS FIRST, g.error_class NULLS FIRST, g.host NULLS FIRST"
        sql = (
            "SELECT g.*, ARRAY(SELECT id FROM items"
            f" WHERE {where} AND {same} ORDER BY id LIMIT {DLQ_SAMPLE_IDS}) AS ids"
            " FROM (SELECT last_error_stage AS stage, last_error_class AS error_class,"
            " last_error_host AS host, count(*) AS n, min(updated_at) AS oldest, max(updated_at) AS newest,"
            " max(last_error_message) AS sample_message"
            f" FROM items WHERE {where}"
            " GROUP BY last_error_stage, last_error_class, last_error_host) AS g"
            f" ORDER BY {order} LIMIT %(limit)s"
        )
        with self._read() as conn:
            rows = conn.execute(sql, {**params, "limit": limit}).fetchall()
        return [
            DLQGroup(
                stage=r["stage"],
                error_class=r["error_class"],
                host=r["host"],
                count=int(r["n"]),
                oldest=r["oldest"],
                newest=r["newest"],
                sample_ids=list(r["ids"]),
                sample_message=r["sample_message"],
            )
            for r in rows
        ]

    def dlq_replay(self, flt: DLQFilter, dry_run: bool = False) -> int:
        """Requeue matching dead items with fresh attempt counters; their history is kept."""
        where, params = dlq_where(flt)
        now = self.clock()
        with self._write() as conn:
            if dry_run:
                return int(_first(conn, f"SELECT count(*) FROM items WHERE {where}", params))
            conn.execute(
                "INSERT INTO attempts (item_id, attempt, at, outcome, message)"
                f" SELECT id, attempts, %(now)s, 'replayed', 'replayed from the DLQ' FROM items WHERE {where}"
                " ORDER BY id",
                {**params, "now": now},
            )
            n = conn.execute(
                "UPDATE items SET state = 'queued', attempts = 0, deaths = 0, lease_expiries = 0,"
                " isolate = 0, next_attempt_at = %(now)s, dead_reason = NULL, done_at = NULL,"
                f" updated_at = %(now)s WHERE {where}",
                {**params, "now": now},
            ).rowcount
            if n:
                conn.execute(Q["notify"])
            return n

    def dlq_purge(self, flt: DLQFilter, dry_run: bool = False) -> int:
        """Delete matching dead items and their history."""
        where, params = dlq_where(flt)
        with self._write() as conn:
            if dry_run:
                return int(_first(conn, f"SELECT count(*) FROM items WHERE {where}", params))
            conn.execute(
                f"DELETE FROM attempts WHERE item_id IN (SELECT id FROM items WHERE {where})", params
            )
            return conn.execute(f"DELETE FROM items WHERE {where}", params).rowcount


def _first(conn: Conn, sql: str, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else next(iter(row.values()))
