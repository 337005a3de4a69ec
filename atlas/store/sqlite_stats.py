"""The exporter's snapshot of an SQLite store, on its own read-only connection.

Every read is an index seek or a read of a small counter table kept in the same transaction as
each change (triggers of migration 0003_stats; inserts count themselves, sqlite_items), never a
scan of items or contents, so a scrape costs the same at 1,000,000 items as at 1,000. All reads
of one snapshot run in one read transaction.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from atlas.errors import StoreError
from atlas.store.models import BACKUP_KEY, HEARTBEAT_KEY_PREFIX, MAINTENANCE_KEY, StoreStats
from atlas.store.queries import load_queries

S = load_queries("atlas.store", "stats.sql")
# The oldest-queued walk is the API backpressure's own query (queries.sql), not a copy of it.
Q = load_queries("atlas.store", "queries.sql")


class StatsReader:
    """A read-only connection to the database file (never migrates or creates it)."""

    def __init__(self, path: Path, busy_timeout_ms: int = 1000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        # Scrapes may overlap (threaded HTTP server); the connection serves one at a time.
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # A restore replaces the database file: an open connection would keep reading the old,
        # unlinked one forever, so the file's identity is checked every read (one stat call).
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.close()
            raise sqlite3.OperationalError(f"unable to open database file: {exc}") from exc
        if self._conn is not None and self._inode != (st.st_dev, st.st_ino):
            self.close()
        if self._conn is None:
            self._inode = (st.st_dev, st.st_ino)
            # mode=rw: a missing database is an error (store down), never a new empty file.
            conn = sqlite3.connect(
                f"{Path(self.path).resolve().as_uri()}?mode=rw",  # as_uri escapes ?, # and % in the path
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
            conn.execute("PRAGMA query_only = ON")
            self._conn = conn
        return self._conn

    def read(self) -> StoreStats:
        """One consistent snapshot. Raises StoreError; the connection is dropped on error."""
        with self._lock:
            try:
                return self._read()
            except sqlite3.Error as exc:
                self.close()
                raise StoreError(f"{self.path}: {exc}") from exc

    def _read(self) -> StoreStats:
        snap = StoreStats()
        conn = self._connect()
        conn.execute("BEGIN")
        try:
            snap.items = conn.execute(S["stats_items"]).fetchall()
            snap.dlq = conn.execute(S["stats_dlq"]).fetchall()
            snap.oldest_queued_at = conn.execute(Q["oldest_queued"]).fetchone()[0]
            snap.completed = conn.execute(S["completed"]).fetchone()[0]
            row = conn.execute(S["stats_contents"]).fetchone()
            if row is not None:
                snap.contents, snap.content_bytes = row
            snap.feeds = _feeds(conn)
            # kv is a handful of rows (maintenance, backup, one heartbeat per engine).
            snap.heartbeats = [
                v
                for (v,) in conn.execute(
                    S["kv_prefix"], {"n": len(HEARTBEAT_KEY_PREFIX), "prefix": HEARTBEAT_KEY_PREFIX}
                )
            ]
            snap.kv = dict(conn.execute(S["kv_two"], {"a": BACKUP_KEY, "b": MAINTENANCE_KEY}).fetchall())
        finally:
            conn.execute("COMMIT")
        snap.db_bytes = _file_size(self.path)
        snap.wal_bytes = _file_size(Path(f"{self.path}-wal"))
        return snap

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _feeds(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = conn.execute(S["feeds_by_status"]).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a store from before migration 0004
            return {}
        raise
    return {("failing" if failing else "active"): n for failing, n in rows}


def _file_size(path: Path) -> float | None:
    try:
        return float(path.stat().st_size)
    except OSError:
        return None
