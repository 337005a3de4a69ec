"""Connections to a SQLite store: WAL, a configurable synchronous level, a connection per thread,
transactions that translate driver errors, and the shipped migrations.

Every write is one `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's lock (bounded by the
busy timeout) instead of failing half-way; readers never block writers in WAL mode.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atlas.errors import DatabaseNotReady, MigrationError, StoreError
from atlas.store.dialect import Dialect
from atlas.store.queries import QueryTimings, TimedConnection, load_migrations
from atlas.store.sqlite_checkpoint import SAFETY_PAGES, WalCheckpointer

# How often a writer waiting for another's lock tries again (SQLiteConnections._begin).
BUSY_POLL_SECONDS = 0.002

# None binds as NULL either way, but with no adapter registered for its type the sqlite3 module
# looks for one on every None it binds (a key tuple built, a dict missed, `__adapt__` and
# `__conform__` looked up): ~0.6 us a value on Python 3.11, and a document the engine settles
# inline binds up to eight (the completion's lease token, duplicate_of, and its content's absent
# title, URLs, language, author and date unless insert_content_plain leaves those out).
# Registered, the lookup finds `{}.get`, a C call that answers None for None: measured, six Nones
# a row 5.7-8.8 -> 3.9-5.1 us (issue 18). The registration is the process's, like every sqlite3
# adapter; it changes no value bound.
_NULL: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NULL.get)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped, in order."""
    return load_migrations("atlas.store")


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


class SQLiteConnections:
    """The connections, transactions and schema of one SQLite file (the base of SQLiteStore)."""

    def __init__(self, path: Path | str, *, synchronous: str, busy_timeout_ms: int, migrate: bool) -> None:
        """Open the database at `path`; with `migrate` (the default) create and migrate it first.

        `migrate=False` (what read and write commands of the CLI use) never creates a file or
        changes the schema: it raises DatabaseNotReady when the file is missing or its schema is
        not the one this version of Atlas ships.
        """
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Operations that failed on SQLITE_BUSY / SQLITE_LOCKED (atlas_db_locked_errors_total,
        # read at scrape time by StoreLockCollector): another writer held the lock too long.
        self.locked_errors = 0
        # atlas_db_query_duration_seconds of the named queries, exported like locked_errors.
        self.query_timings = QueryTimings()
        # Checkpoints run on a thread of their own, not in the commits (atlas.store.sqlite_checkpoint).
        self.checkpointer = WalCheckpointer(self.path)
        # A store dropped without close() must not leave the thread (and its connection) behind.
        weakref.finalize(self, self.checkpointer.stop_soon)
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
            conn.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_PAGES}")
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
            self._begin(conn)
        except sqlite3.Error as exc:
            self._note(exc)
            raise StoreError(f"cannot start a write transaction on {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
            self.checkpointer.wrote()
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self._note(exc)
                raise StoreError(f"database write failed on {self.path}: {exc}") from exc
            raise

    def _begin(self, conn: sqlite3.Connection) -> None:
        """`BEGIN IMMEDIATE`, waiting for another writer's lock up to the busy timeout, tried
        again every BUSY_POLL_SECONDS. SQLite's own busy handler sleeps 1, 2, 5, ... 50, then 100 ms
        at a time, so a writer that found the lock taken went on sleeping up to 100 ms after it
        was free: the engine's claim after a big enqueue (measured: 14 sleeps, 532 ms, the last
        ending up to 0.1 s after the enqueue's commit), the API's commit process after a big batch.
        The connection's busy timeout is 0 for the BEGIN only: every statement after it waits as
        before."""
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = None
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not is_locked(exc):
                        raise
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.busy_timeout_ms / 1000
                    elif now >= deadline:
                        raise
                time.sleep(BUSY_POLL_SECONDS)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

    def _note(self, exc: sqlite3.Error) -> None:
        """Count an error that is the database being locked or busy past the busy timeout."""
        if is_locked(exc):
            with self._lock:
                self.locked_errors += 1

    def close(self) -> None:
        self.checkpointer.close()  # a store used again after close starts it again
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
