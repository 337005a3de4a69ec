"""The SQLite store: WAL, configurable synchronous level, a connection per thread.

Every write is one `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's lock (bounded by the
busy timeout) instead of failing half-way; readers never block writers in WAL mode.
"""

from __future__ import annotations

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
from atlas.store import dlq
from atlas.store.dialect import Dialect
from atlas.store.dlq import DLQStore
from atlas.store.ids import new_id
from atlas.store.itemreads import ItemReadsStore
from atlas.store.itemrows import row_to_claimed
from atlas.store.models import (
    Claimed,
    DLQFilter,
    EnqueueResult,
    NewItem,
    Transition,
)
from atlas.store.queries import QueryTimings, TimedConnection, load_queries
from atlas.store.sharedstate import KeysAndStateStore
from atlas.store.sqlite_content import C, ContentStore
from atlas.store.sqlite_items import insert_items, item_row
from atlas.store.sqlite_ops import OpsStore
from atlas.store.transitions import TransitionRows, content_row, reap_expired

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


def _in_values(column: str, name: str, values: Sequence[Any], params: dict[str, Any]) -> str:
    marks = []
    for i, value in enumerate(values):
        params[f"{name}{i}"] = value
        marks.append(f":{name}{i}")
    return f"{column} IN ({', '.join(marks)})"


def _executemany(conn: sqlite3.Connection, sql: str, rows: Sequence[Any]) -> None:
    conn.executemany(sql, rows)  # the connection's: TimedConnection times named queries there


# SQLite's SQL dialect for the backend-neutral store logic (atlas.store.dialect).
SQLITE = Dialect(
    param=lambda name: f":{name}",
    in_values=_in_values,
    executemany=_executemany,
    same="IS",
)


def dlq_list_query(flt: DLQFilter, after: str | None = None) -> tuple[str, dict[str, Any]]:
    """The DLQ listing statement and its parameters (`:limit` still to bind), in id order after `after`."""
    return dlq.dlq_list_query(flt, SQLITE, after)


def dlq_groups_query(flt: DLQFilter) -> tuple[str, dict[str, Any]]:
    """atlas.store.dlq.dlq_groups_query with a group's first ids as group_concat's text."""
    return dlq.dlq_groups_query(flt, SQLITE, lambda select: f"(SELECT group_concat(id) FROM ({select}))")


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


class SQLiteStore(ItemReadsStore, ContentStore, KeysAndStateStore, DLQStore, OpsStore):
    """Store protocol on one SQLite file. Thread-safe: each thread gets its own connection."""

    dialect = SQLITE
    sql = {**Q, **C}

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

    # -- leases (item reads, heartbeat, release: atlas.store.itemreads) --------------------------

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        now = self.clock()
        token = uuid.uuid4().hex
        with self._write() as conn:
            rows = conn.execute(
                Q["claim"],
                {"owner": owner, "token": token, "until": now + lease_seconds, "now": now, "limit": limit},
            ).fetchall()
        claimed = [row_to_claimed(r, token) for r in rows]
        if any(c.kind == "url" for c in claimed):
            with self._read() as conn:
                self.attach_validators(conn, claimed)
        return claimed

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        now = self.clock()
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
            out = TransitionRows(now)
            contents = []
            for t in live:
                duplicate_of = None
                if t.result is not None:
                    original = owners.setdefault(t.result.content_hash, t.item_id)
                    if original == t.item_id and t.result.canonical_url:
                        original = url_owners.setdefault(t.result.canonical_url, t.item_id)
                        if original != t.item_id:
                            del owners[t.result.content_hash]  # this text was not stored after all
                    if original != t.item_id:
                        duplicate_of = original
                    elif t.result.text:  # empty: a 304 whose content has since been deleted
                        contents.append(content_row(t.item_id, t.result, now))
                out.add(t, duplicate_of)
            for query, rows in out.batches():
                conn.executemany(self.sql[query], rows)
                if query == "insert_attempt":  # the order the statements always ran in
                    conn.executemany(Q["insert_content"], contents)
        return out.applied

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
        with self._write() as conn:
            return reap_expired(conn, Q, self.clock(), max_lease_expiries)

    # -- dead-letter queue (atlas.store.dlq) ------------------------------------------------------

    def _dlq_groups_query(self, flt: DLQFilter) -> tuple[str, dict[str, Any]]:
        return dlq_groups_query(flt)

    def _sample_ids(self, value: Any) -> list[str]:
        return (value or "").split(",")

    def queue_stats(self) -> dict[str, float]:
        """Queued items, the oldest one's acceptance time (0 if none), and completions so far."""
        with self._read() as conn:
            return {
                "queued": conn.execute(Q["queued_count"]).fetchone()[0],
                "oldest_queued_at": conn.execute(Q["oldest_queued"]).fetchone()[0] or 0.0,
                "completions": conn.execute(Q["completions_seq"]).fetchone()[0],
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
