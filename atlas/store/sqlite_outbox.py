"""The router's outbox on SQLite (WAL, synchronous=FULL by default) in its own file,
ATLAS_DATA_DIR/alert-router.db; the logic is atlas.store.outbox.Outbox."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atlas.errors import StoreError
from atlas.store.outbox import Outbox

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY,
    dedupe_key  TEXT NOT NULL UNIQUE,
    group_key   TEXT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,          -- the normalised notification (JSON)
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    group_key       TEXT NOT NULL,      -- copied from the notification: one group in flight at a time
    state           TEXT NOT NULL,      -- pending | sent | dead | skipped
    fingerprints    TEXT NOT NULL,      -- JSON list: the alerts this channel gets
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         REAL NOT NULL,
    lease_until     REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    finished_at     REAL,
    UNIQUE (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(channel, state, group_key, id);
-- The claim walks a channel's pending rows in id order and stops at its LIMIT; without this index
-- it sorted every pending row first (~5 ms a claim, under the bookkeeping lock, with 1,000 pending).
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(channel, state, id);
CREATE INDEX IF NOT EXISTS notifications_received ON notifications(received_at);
CREATE TABLE IF NOT EXISTS cooldowns (
    channel     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (channel, fingerprint)
);
CREATE TABLE IF NOT EXISTS threads (
    group_key  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (group_key, channel)
);
"""

# The oldest pending delivery of each (channel, group) is the only one claimable: a group's
# resolved notification never overtakes its firing one, and an email thread starts with its root.
_CLAIM = """
UPDATE deliveries SET lease_until = :lease_until
WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.channel = :channel AND d.state = 'pending' AND d.next_at <= :now AND d.lease_until <= :now
      AND d.id = (SELECT min(d2.id) FROM deliveries d2
                  WHERE d2.channel = d.channel AND d2.group_key = d.group_key AND d2.state = 'pending')
    ORDER BY d.id LIMIT :limit
)
RETURNING id
"""


class SQLiteOutbox(Outbox):
    """Three connections shared by the router's threads, each behind a lock (writes are short)."""

    _claim_sql = _CLAIM

    def __init__(self, path: Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000) -> None:
        super().__init__()
        self.path = path
        self.where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Two connections: intake commits at the configured level (FULL: an acknowledged
            # notification survives power loss), the sender's bookkeeping at NORMAL (a "sent" mark
            # lost to power loss means one resend, which at-least-once allows). In WAL mode the
            # level is per connection, and the next FULL commit syncs the NORMAL ones' frames too.
            # Measured by bench/router.py: with every update at FULL, fsyncs capped the router
            # at ~50 notifications/s on this machine.
            self._intake = self._open(synchronous, busy_timeout_ms)
            self._db = self._open("NORMAL", busy_timeout_ms)
            # Email thread lookups read on their own connection (WAL: readers never wait for writers).
            self._reader = self._open("NORMAL", busy_timeout_ms)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the outbox: {exc}") from exc
        self._intake_lock = threading.Lock()
        self._lock = threading.Lock()
        self._reader_lock = threading.Lock()

    def _open(self, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(_SCHEMA)
        return db

    def close(self) -> None:
        with self._intake_lock, self._lock, self._reader_lock:
            self._intake.close()
            self._db.close()
            self._reader.close()

    @contextmanager
    def _tx(self, intake: bool = False) -> Iterator[sqlite3.Connection]:
        db, lock = (self._intake, self._intake_lock) if intake else (self._db, self._lock)
        with lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    def _thread_lookup(self, group_key: str, channel: str) -> str | None:
        try:
            with self._reader_lock:
                row = self._reader.execute(
                    "SELECT message_id FROM threads WHERE group_key = ? AND channel = ?", (group_key, channel)
                ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        return str(row["message_id"]) if row is not None else None

    def release_leases(self) -> int:
        """Forget every lease: the file is this router's alone, and its previous process is gone."""
        with self._tx() as db:
            return int(db.execute("UPDATE deliveries SET lease_until = 0 WHERE state = 'pending'").rowcount)
