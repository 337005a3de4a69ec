"""Connections to PostgreSQL: a pool, transactions that translate driver errors, migrations, and
the LISTEN connection that wakes an idle engine.

Every method of the store is one transaction on one pooled connection (`_write`/`_read`); psycopg
raises its own errors, which leave this module as StoreError (or DatabaseNotReady/MigrationError)
with the cause kept.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any, Self

import psycopg
from psycopg.abc import Params, Query
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import Row, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from atlas.errors import DatabaseNotReady, MigrationError, StoreError
from atlas.store.queries import NamedSQL, QueryTimings, load_migrations
from atlas.store.tsvector import TSVector

# pg_advisory_xact_lock key held while migrating, so processes starting together migrate once.
MIGRATION_LOCK_KEY = 0x41746C6173  # "Atlas"
NOTIFY_CHANNEL = "atlas_items"
POOL_TIMEOUT_SECONDS = 30.0

Conn = psycopg.Connection[dict[str, Any]]
# application_name of every Atlas session: which process on which host holds it, so a restore can
# name (and refuse) Atlas processes it cannot stop, on any host (PgArchive.foreign_sessions).
SESSION_NAME = re.compile(r"^atlas pid=(\d+) host=(\S+) cmd=(.*)$")
HOST_CHARS = 24  # application_name holds 63 bytes: pid, host and the command must fit


def session_host() -> str:
    return socket.gethostname()[:HOST_CHARS]


def session_name() -> str:
    """`atlas pid=<pid> host=<host> cmd=<atlas api|atlas core|...>`, cut to 63 bytes."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if prog == "__main__.py":  # python -m atlas
        prog = os.path.basename(os.path.dirname(sys.argv[0]))
    words = [prog, *[a for a in sys.argv[1:2] if not a.startswith("-")]]
    name = f"atlas pid={os.getpid()} host={session_host()} cmd={' '.join(words)}"
    return name.encode()[:63].decode(errors="ignore")


class TimedCursor(psycopg.Cursor[Row]):
    """A cursor that times named queries into its connection's `query_timings` (see
    atlas.store.queries; the pool sets it on every connection it makes): `conn.execute` and
    `conn.cursor()` both make one of these. What is timed is the execute (the statement's round
    trip and its result's transfer); a failed statement is observed too."""

    def execute(
        self,
        query: Any,  # Any: Cursor.execute is overloaded (templates take no params)
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        timings: QueryTimings | None = getattr(self.connection, "query_timings", None)
        if type(query) is not NamedSQL or timings is None:
            return super().execute(query, params, prepare=prepare, binary=binary)
        start = perf_counter()
        try:
            return super().execute(query, params, prepare=prepare, binary=binary)
        finally:
            timings[query.name](perf_counter() - start)

    def executemany(self, query: Query, params_seq: Iterable[Params], *, returning: bool = False) -> None:
        timings: QueryTimings | None = getattr(self.connection, "query_timings", None)
        if type(query) is not NamedSQL or timings is None:
            return super().executemany(query, params_seq, returning=returning)
        start = perf_counter()
        try:
            return super().executemany(query, params_seq, returning=returning)
        finally:
            timings[query.name](perf_counter() - start)


class TSVectorDumper(Dumper):
    """Sends a TSVector as it is, in binary, as the tsvector type (arrays of them too)."""

    format = Format.BINARY
    oid = 3614  # tsvector, a built-in type

    def dump(self, obj: TSVector) -> bytes:
        return obj


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every PostgreSQL migration shipped, in order."""
    return load_migrations("atlas.store.postgres")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


class Connections:
    """A connection pool on one database URL, plus one dedicated LISTEN connection on demand."""

    def __init__(self, url: str, *, pool_size: int) -> None:
        self.url = url
        self.where = redact(url)
        # atlas_db_query_duration_seconds of the named queries run on this pool's connections.
        self.query_timings = QueryTimings()
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_lock = threading.Lock()
        try:
            self.pool: ConnectionPool[Conn] = ConnectionPool(
                url,
                min_size=1,
                max_size=max(1, pool_size),
                kwargs={
                    "row_factory": dict_row,
                    "cursor_factory": TimedCursor,
                    "application_name": session_name(),
                },
                configure=self._configure,
                timeout=POOL_TIMEOUT_SECONDS,
                open=False,
                name="atlas",
            )
            self.pool.open(wait=True, timeout=POOL_TIMEOUT_SECONDS)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"cannot connect to {self.where}: {exc}") from exc

    def _configure(self, conn: Conn) -> None:
        conn.query_timings = self.query_timings  # type: ignore[attr-defined]  # read by TimedCursor
        conn.adapters.register_dumper(TSVector, TSVectorDumper)  # the search index's, made by the store

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(f"no database connection free on {self.where}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"database operation failed on {self.where}: {exc}") from exc

    def close(self) -> None:
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self.pool.close()

    # -- schema ---------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self.transaction() as conn:
            exists = conn.execute("SELECT to_regclass('atlas_schema') IS NOT NULL AS ok").fetchone()
            if not exists or not exists["ok"]:
                return 0
            row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM atlas_schema").fetchone()
            return int(row["v"]) if row else 0

    def migrate(self) -> int:
        """Apply every migration newer than the database, in one transaction each, under a lock."""
        applied = 0
        for version, name, sql in migrations():
            with self.transaction() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS atlas_schema"
                    " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
                )
                row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM atlas_schema").fetchone()
                if row and int(row["v"]) >= version:
                    continue
                try:
                    conn.execute(sql.encode())  # no parameters: several statements in one
                except psycopg.Error as exc:
                    raise MigrationError(f"migration postgres/{version:04d}_{name} failed: {exc}") from exc
                conn.execute(
                    "INSERT INTO atlas_schema (version, name, applied_at) VALUES (%s, %s, now())",
                    (version, name),
                )
                applied += 1
        return applied

    def check_schema(self) -> None:
        """Raise DatabaseNotReady unless the database is at the schema this Atlas ships."""
        try:
            current = self.schema_version()
        except StoreError as exc:
            raise DatabaseNotReady(f"cannot open the database at {self.where}: {exc.__cause__}") from exc
        latest = migrations()[-1][0]
        if current != latest:
            fix = "run `atlas-ops database migrate`" if current < latest else "upgrade Atlas"
            raise DatabaseNotReady(
                f"the database at {self.where} is at schema version {current},"
                f" this Atlas uses {latest}: {fix}"
            )

    # -- wake-ups -------------------------------------------------------------------------------

    def wait_for_notify(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for a NOTIFY on NOTIFY_CHANNEL; True if one came.

        The LISTEN connection is opened on first use and kept (outside the pool: it must stay
        subscribed). Notifications that arrived while nobody waited are returned at once; several
        are drained as one wake-up.
        """
        with self._listen_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = psycopg.connect(
                        self.url, autocommit=True, application_name=session_name()
                    )
                    self._listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
                woke = False
                for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                    woke = True
                if woke:  # drain what else is queued, without waiting
                    for _ in self._listener.notifies(timeout=0):
                        pass
                return woke
            except psycopg.Error as exc:
                if self._listener is not None:
                    self._listener.close()
                    self._listener = None
                raise StoreError(f"waiting for work on {self.where} failed: {exc}") from exc
