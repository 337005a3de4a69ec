"""The SQLite store: WAL, configurable synchronous level, a connection per thread.

Every write is one `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's lock (bounded by the
busy timeout) instead of failing half-way; readers never block writers in WAL mode.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from atlas.errors import DatabaseNotReady, MigrationError, StoreError
from atlas.store.ids import new_id
from atlas.store.itemrows import row_to_item
from atlas.store.models import (
    BACKUP_KEY,
    FINAL_STATES,
    AttemptRecord,
    Claimed,
    ContentResult,
    DLQFilter,
    DLQGroup,
    EnqueueResult,
    Item,
    NewItem,
    Transition,
)
from atlas.store.queries import QueryTimings, TimedConnection, load_queries
from atlas.store.sqlite_content import C, ContentStore
from atlas.store.sqlite_items import insert_items, item_row
from atlas.store.sqlite_items import to_json as _json
from atlas.store.sqlite_ops import OpsStore

Q = load_queries("atlas.store", "queries.sql")
_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped, in order."""
    found = []
    for entry in files("atlas.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _dlq_where(flt: DLQFilter) -> tuple[str, dict[str, Any]]:
    # Filters are optional, so this one statement is assembled; every value is still a parameter.
    clauses = ["state = 'dead'"]
    params: dict[str, Any] = {}
    columns = {
        "stage": "last_error_stage",
        "error_class": "last_error_class",
        "host": "last_error_host",
        "kind": "kind",
        "source": "source",
        "reason": "dead_reason",
    }
    for attr, column in columns.items():
        value = getattr(flt, attr)
        if value is not None:
            clauses.append(f"{column} = :{attr}")
            params[attr] = value
    if flt.dead_before is not None:
        clauses.append("updated_at < :dead_before")
        params["dead_before"] = flt.dead_before
    if flt.dead_after is not None:
        clauses.append("updated_at >= :dead_after")
        params["dead_after"] = flt.dead_after
    if flt.ids:
        names = []
        for i, item_id in enumerate(flt.ids):
            params[f"id{i}"] = item_id
            names.append(f":id{i}")
        clauses.append(f"id IN ({', '.join(names)})")
    return " AND ".join(clauses), params


def dlq_list_query(flt: DLQFilter, after: str | None = None) -> tuple[str, dict[str, Any]]:
    """The DLQ listing statement and its parameters (`:limit` still to bind), in id order after `after`."""
    where, params = _dlq_where(flt)
    if after is not None:
        where += " AND id > :after"
        params["after"] = after
    return f"SELECT * FROM items WHERE {where} ORDER BY id LIMIT :limit", params


DLQ_SAMPLE_IDS = 5


def dlq_groups_query(flt: DLQFilter) -> tuple[str, dict[str, Any]]:
    """The DLQ grouping statement and its parameters (`:limit` still to bind): per (stage, error
    class, host), the size, time range and a sample message, largest groups first, and the first
    DLQ_SAMPLE_IDS ids in id order.

    The ids come from a correlated subquery with LIMIT, run only for the groups returned: a
    group_concat over the whole group held every id of a million-item group in memory to keep five.
    """
    where, params = _dlq_where(flt)
    same_group = (
        "last_error_stage IS g.stage AND last_error_class IS g.error_class AND last_error_host IS g.host"
    )
    sql = (
        "SELECT g.*, (SELECT group_concat(id) FROM"
        f" (SELECT id FROM items WHERE {where} AND {same_group} ORDER BY id LIMIT {DLQ_SAMPLE_IDS})) AS ids"
        " FROM (SELECT last_error_stage AS stage, last_error_class AS error_class,"
        " last_error_host AS host, count(*) AS n, min(updated_at) AS oldest, max(updated_at) AS newest,"
        " max(last_error_message) AS sample_message"
        f" FROM items WHERE {where}"
        " GROUP BY last_error_stage, last_error_class, last_error_host"
        " ORDER BY n DESC, stage, error_class, host LIMIT :limit) AS g"
        " ORDER BY g.n DESC, g.stage, g.error_class, g.host"
    )
    return sql, params


# SQLite's primary result codes for "the database file is locked" and "a table is locked"
# (sqlite3.h); extended codes (SQLITE_BUSY_SNAPSHOT, ...) carry them in their low byte.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` is SQLite giving up on a lock ("database is locked", busy) rather than a bug."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class SQLiteStore(ContentStore, OpsStore):
    """Store protocol on one SQLite file. Thread-safe: each thread gets its own connection."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.time,
        migrate: bool = True,
    ) -> None:
        """Open the database at `path`; with `migrate` (the default) create and migrate it first.

        `migrate=False` (what read and write commands of the CLI use) never creates a file or
        changes the schema: it raises DatabaseNotReady when the file is missing or its schema is
        not the one this version of Atlas ships.
        """
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Operations that failed on SQLITE_BUSY / SQLITE_LOCKED (atlas_db_locked_errors_total,
        # read at scrape time by StoreLockCollector): another writer held the lock too long.
        self.locked_errors = 0
        # atlas_db_query_duration_seconds of the named queries, exported like locked_errors.
        self.query_timings = QueryTimings()
        self._create = migrate
        self.migrations_applied = 0
        if migrate:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.migrations_applied = self.migrate()
        else:
            self._check_schema()

    # -- connections and transactions ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        # Without `_create`, mode=rw: SQLite itself refuses to create a missing file (no race with
        # an existence check).
        target = self.path if self._create else f"{self.path.resolve().as_uri()}?mode=rw"
        try:
            conn = sqlite3.connect(
                target,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
                uri=not self._create,
                factory=TimedConnection,  # atlas_db_query_duration_seconds of the named queries
            )
            conn.timings = self.query_timings
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        except sqlite3.Error as exc:
            self._note(exc)
            raise StoreError(f"database read failed on {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._note(exc)
            raise StoreError(f"cannot start a write transaction on {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self._note(exc)
                raise StoreError(f"database write failed on {self.path}: {exc}") from exc
            raise

    def _note(self, exc: sqlite3.Error) -> None:
        """Count an error that is the database being locked or busy past the busy timeout."""
        if is_locked(exc):
            with self._lock:
                self.locked_errors += 1

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        reader = getattr(self, "_stats_reader", None)
        if reader is not None:
            reader.close()

    # -- schema ---------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_schema(self) -> None:
        if not self.path.is_file():
            raise DatabaseNotReady(
                f"no database at {self.path}: check ATLAS_DATA_DIR (or ATLAS_DATABASE_URL); "
                "`atlas-ops database migrate` creates it"
            )
        try:
            current = self.schema_version()
        except StoreError as exc:
            self.close()
            raise DatabaseNotReady(f"cannot open the database at {self.path}: {exc.__cause__}") from exc
        latest = migrations()[-1][0]
        if current != latest:
            self.close()
            fix = "run `atlas-ops database migrate`" if current < latest else "upgrade Atlas"
            raise DatabaseNotReady(
                f"the database at {self.path} is at schema version {current}, this Atlas uses {latest}: {fix}"
            )

    def migrate(self) -> int:
        """Apply every migration newer than the database, each in its own transaction."""
        applied = 0
        for version, name, sql in migrations():
            with self._write() as conn:
                current = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version <= current:
                    continue
                try:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                except sqlite3.Error as exc:
                    raise MigrationError(f"migration {version:04d}_{name} failed: {exc}") from exc
                applied += 1
        return applied

    # -- enqueue --------------------------------------------------------------------------------

    def enqueue(self, items: Sequence[NewItem]) -> list[EnqueueResult]:
        now = self.clock()
        results: list[EnqueueResult | None] = [None] * len(items)
        rows: list[tuple[Any, ...]] = []  # positional: the hot path of every accept, measured
        keyed: dict[str, int] = {}
        with self._write() as conn:
            keys = [it.idempotency_key for it in items if it.idempotency_key is not None]
            existing: dict[str, tuple[str, str | None]] = {}
            for chunk_start in range(0, len(keys), 500):
                chunk = keys[chunk_start : chunk_start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(Q["idempotency_lookup"].format(marks), chunk):
                    existing[row[0]] = (row[1], row[2])
            for index, item in enumerate(items):
                key = item.idempotency_key
                if key is not None:
                    if key in existing:
                        results[index] = EnqueueResult(existing[key][0], False, existing[key][1])
                        continue
                    if key in keyed:  # repeated within this batch: one item
                        first = rows[keyed[key]]
                        results[index] = EnqueueResult(first[0], False, first[9])
                        continue
                    keyed[key] = len(rows)
                item_id = new_id(now)
                rows.append(item_row(item_id, item, key, now))
                results[index] = EnqueueResult(item_id, True, item.request_hash)
            insert_items(conn, rows, now)
        return [r for r in results if r is not None]

    def recount_items(self) -> None:
        """Rebuild the per-(state, kind) counters from the rows, for items inserted by hand."""
        with self._write() as conn:
            conn.execute(Q["recount_items_zero"])
            conn.execute(Q["recount_items"])

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
        return [AttemptRecord(**dict(r)) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        with self._read() as conn:
            return {(r["state"], r["kind"]): r["n"] for r in conn.execute(Q["count_by_state"])}

    def completions(self) -> dict[str, int]:
        """How many final transitions each item has had (the crash test expects exactly one)."""
        with self._read() as conn:
            rows = conn.execute("SELECT item_id, count(*) FROM completions GROUP BY item_id")
            return {r[0]: r[1] for r in rows}

    # -- leases ---------------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        now = self.clock()
        token = uuid.uuid4().hex
        with self._write() as conn:
            rows = conn.execute(
                Q["claim"],
                {"owner": owner, "token": token, "until": now + lease_seconds, "now": now, "limit": limit},
            ).fetchall()
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
            with self._read() as conn:
                self.attach_validators(conn, claimed)
        return claimed

    def heartbeat(self, owner: str, lease_seconds: float) -> int:
        with self._write() as conn:
            cur = conn.execute(Q["heartbeat"], {"owner": owner, "until": self.clock() + lease_seconds})
            return cur.rowcount

    def release(self, owner: str) -> int:
        with self._write() as conn:
            return conn.execute(Q["release_owner"], {"owner": owner, "now": self.clock()}).rowcount

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        now = self.clock()
        applied: dict[str, str] = {}
        with self._write() as conn:
            # Inside one write transaction nothing changes under us, so checking leases and
            # content hashes up front lets every write below be one executemany (a C loop).
            held = self._select_in(
                conn,
                "SELECT id, lease_token FROM items WHERE state = 'leased' AND id IN ({})",
                [t.item_id for t in transitions],
            )
            live = [t for t in transitions if held.get(t.item_id) == t.token]  # else: lease lost
            hashes = [t.result.content_hash for t in live if t.result is not None]
            owners = self._select_in(
                conn, "SELECT content_hash, item_id FROM contents WHERE content_hash IN ({})", hashes
            )
            # The same page under another spelling of its URL is a duplicate too (atlas.pipeline.dedupe).
            urls = [t.result.canonical_url for t in live if t.result is not None and t.result.canonical_url]
            url_owners = self._select_in(
                conn, "SELECT canonical_url, item_id FROM contents WHERE canonical_url IN ({})", urls
            )
            updates, attempts, contents, finals, validators = [], [], [], [], []
            for t in live:
                err, state, outcome, duplicate_of = t.error, t.state, t.outcome, None
                if t.result is not None:
                    original = owners.setdefault(t.result.content_hash, t.item_id)
                    if original == t.item_id and t.result.canonical_url:
                        original = url_owners.setdefault(t.result.canonical_url, t.item_id)
                        if original != t.item_id:
                            del owners[t.result.content_hash]  # this text was not stored after all
                    if original != t.item_id:
                        state = outcome = "duplicate"
                        duplicate_of = original
                    elif t.result.text:  # empty: a 304 whose content has since been deleted
                        contents.append(_content_row(t.item_id, t.result, now))
                    if t.result.url and (t.result.etag or t.result.last_modified):
                        validators.append(
                            {
                                "url": t.result.url,
                                "etag": t.result.etag,
                                "last_modified": t.result.last_modified,
                                "item_id": original,
                                "content_hash": t.result.content_hash,
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
                    "timings": _json(t.timings),
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
            conn.executemany(Q["transition"], updates)
            conn.executemany(Q["insert_attempt"], attempts)
            conn.executemany(Q["insert_content"], contents)
            conn.executemany(Q["insert_completion"], finals)
            conn.executemany(C["validators_upsert"], validators)
        return applied

    @staticmethod
    def _select_in(conn: sqlite3.Connection, sql: str, keys: Sequence[str]) -> dict[str, Any]:
        """{first column: second column} for rows whose key is in `keys` (chunked under SQLite's limit)."""
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            for row in conn.execute(sql.format(",".join("?" * len(chunk))), chunk):
                found[row[0]] = row[1]
        return found

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
        return len(expired)

    # -- dead-letter queue ----------------------------------------------------------------------

    def dlq_list(self, flt: DLQFilter, limit: int = 100, after: str | None = None) -> list[Item]:
        sql, params = dlq_list_query(flt, after)
        with self._read() as conn:
            rows = conn.execute(sql, {**params, "limit": limit}).fetchall()
        return [row_to_item(r) for r in rows]

    def dlq_groups(self, flt: DLQFilter, limit: int = 50) -> list[DLQGroup]:
        sql, params = dlq_groups_query(flt)
        with self._read() as conn:
            rows = conn.execute(sql, {**params, "limit": limit}).fetchall()
        return [
            DLQGroup(
                stage=r["stage"],
                error_class=r["error_class"],
                host=r["host"],
                count=r["n"],
                oldest=r["oldest"],
                newest=r["newest"],
                sample_ids=(r["ids"] or "").split(",")[:DLQ_SAMPLE_IDS],
                sample_message=r["sample_message"],
            )
            for r in rows
        ]

    def dlq_replay(self, flt: DLQFilter, dry_run: bool = False) -> int:
        """Requeue matching dead items with fresh attempt counters; their history is kept."""
        where, params = _dlq_where(flt)
        now = self.clock()
        with self._write() as conn:
            if dry_run:
                return int(conn.execute(f"SELECT count(*) FROM items WHERE {where}", params).fetchone()[0])
            conn.execute(
                "INSERT INTO attempts (item_id, attempt, at, outcome, message)"
                f" SELECT id, attempts, :now, 'replayed', 'replayed from the DLQ' FROM items WHERE {where}",
                {**params, "now": now},
            )
            cur = conn.execute(
                "UPDATE items SET state = 'queued', attempts = 0, deaths = 0, lease_expiries = 0,"
                " isolate = 0, next_attempt_at = :now, dead_reason = NULL, done_at = NULL,"
                f" updated_at = :now WHERE {where}",
                {**params, "now": now},
            )
            return cur.rowcount

    def dlq_purge(self, flt: DLQFilter, dry_run: bool = False) -> int:
        """Delete matching dead items and their history."""
        where, params = _dlq_where(flt)
        with self._write() as conn:
            if dry_run:
                return int(conn.execute(f"SELECT count(*) FROM items WHERE {where}", params).fetchone()[0])
            conn.execute(
                f"DELETE FROM attempts WHERE item_id IN (SELECT id FROM items WHERE {where})", params
            )
            return conn.execute(f"DELETE FROM items WHERE {where}", params).rowcount

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
        clauses: list[str] = ["1 = 1"]
        params: dict[str, Any] = {"limit": limit}
        for column, value in (("state", state), ("kind", kind), ("source", source), ("after", after)):
            if value is not None:
                clauses.append("id > :after" if column == "after" else f"{column} = :{column}")
                params[column] = value
        # Filters are optional, so the statement is assembled; every value is still a parameter.
        sql = f"SELECT * FROM items WHERE {' AND '.join(clauses)} ORDER BY id LIMIT :limit"
        with self._read() as conn:
            return [row_to_item(r) for r in conn.execute(sql, params)]

    def queue_stats(self) -> dict[str, float]:
        """Queued items, the oldest one's acceptance time (0 if none), and completions so far."""
        with self._read() as conn:
            return {
                "queued": conn.execute(Q["queued_count"]).fetchone()[0],
                "oldest_queued_at": conn.execute(Q["oldest_queued"]).fetchone()[0] or 0.0,
                "completions": conn.execute(Q["completions_seq"]).fetchone()[0],
            }

    # -- API keys -------------------------------------------------------------------------------

    def api_key_insert(
        self, key_id: str, name: str, scopes: Sequence[str], secret_hash: str, pepper_id: str | None = None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                Q["api_key_insert"],
                {
                    "id": key_id,
                    "name": name,
                    "scopes": ",".join(scopes),
                    "secret_hash": secret_hash,
                    "pepper_id": pepper_id,
                    "now": self.clock(),
                },
            )

    def api_key_get(self, key_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(Q["api_key_get"], {"id": key_id}).fetchone()
        return dict(row) if row else None

    def api_key_list(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute(Q["api_key_list"])]

    def api_key_revoke(self, key_id: str) -> bool:
        with self._write() as conn:
            return conn.execute(Q["api_key_revoke"], {"id": key_id, "now": self.clock()}).rowcount == 1

    def api_key_touch(self, key_id: str) -> None:
        self.api_key_record_use([(key_id, self.clock())], [])

    def api_key_record_use(
        self, touches: Sequence[tuple[str, float]], rehashes: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """In one transaction: last_used_at for each (key id, time) in `touches`, and for each
        (key id, hash verified, new hash, pepper id) in `rehashes` the new hash, unless the stored
        hash has changed since it was verified."""
        with self._write() as conn:
            conn.executemany(Q["api_key_touch"], [{"id": k, "now": at} for k, at in touches])
            conn.executemany(
                Q["api_key_rehash"],
                [{"id": k, "old_hash": o, "new_hash": n, "pepper_id": p} for k, o, n, p in rehashes],
            )

    # -- shared state ---------------------------------------------------------------------------

    def kv_get(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(Q["kv_get"], {"key": key}).fetchone()
        return row[0] if row else None

    def kv_set(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(Q["kv_set"], {"key": key, "value": value, "now": self.clock()})

    def kv_items(self, prefix: str) -> list[tuple[str, str]]:
        with self._read() as conn:
            rows = conn.execute("SELECT key, value FROM kv WHERE key LIKE ? || '%'", (prefix,))
            return [(r[0], r[1]) for r in rows]

    def kv_delete(self, key: str) -> None:
        with self._write() as conn:
            conn.execute(Q["kv_delete"], {"key": key})

    def kv_prune(self, prefix: str, older_than_seconds: float) -> int:
        with self._write() as conn:
            cur = conn.execute(Q["kv_prune"], {"prefix": prefix, "before": self.clock() - older_than_seconds})
            return cur.rowcount

    def record_backup(self, finished_at: float, size_bytes: int, path: str) -> None:
        """Remember the last verified backup (kv BACKUP_KEY), which the exporter's gauges report."""
        value = json.dumps({"finished_at": finished_at, "bytes": size_bytes, "path": path})
        self.kv_set(BACKUP_KEY, value)


def _content_row(item_id: str, r: ContentResult, now: float) -> dict[str, Any]:
    return {
        "id": item_id,
        "content_hash": r.content_hash,
        "content_type": r.content_type,
        "title": r.title,
        "text": r.text,
        "canonical_url": r.canonical_url,
        "language": r.language,
        "author": r.author,
        "published": r.published,
        "url": r.url,
        "bytes": len(r.text.encode("utf-8")),
        "now": now,
    }


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements.

    sqlite3.complete_statement knows where a statement ends, so a trigger's BEGIN ... END body
    (semicolons inside) stays one statement; executescript would commit the migration's
    transaction first, so it cannot be used.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return [s for s in statements if s.rstrip(";").strip()]
