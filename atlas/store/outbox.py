"""The alert router's outbox: SQLite (WAL, synchronous=FULL by default) in its own file.

A notification and its deliveries (one row per channel) are committed in one transaction before
the webhook is answered 200, so an acknowledged notification survives a crash or power loss. The
sender leases due deliveries, sends, and records the outcome; a lease that outlives its process
(killed mid-delivery) is released when the router starts again, so the delivery is sent again:
at-least-once per channel, and never again once the outbox recorded it as sent.

Delivery states: pending -> sent | dead; `skipped` records a channel that got none of the alerts
(min_severity, send_resolved, the alert's channels, cooldown) so the audit trail says why.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.errors import StoreError

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


@dataclass(frozen=True)
class Candidate:
    """One alert a channel would get, before its cooldown is checked."""

    fingerprint: str
    status: str
    cooldown_seconds: float


@dataclass(frozen=True)
class Plan:
    """What one channel gets of a notification: candidates, or why it gets nothing."""

    channel: str
    candidates: tuple[Candidate, ...]
    skipped_reason: str = ""


@dataclass(frozen=True)
class Accepted:
    notification_id: int
    duplicate: bool
    deliveries: dict[str, str]  # channel -> state (pending | skipped)


@dataclass(frozen=True)
class Outcome:
    """What became of one leased delivery: `sent` or `dead` (`at` = when, `error` = why dead),
    `retry` (`at` = next attempt, `error` = what failed), `defer` (`at` = next attempt, no
    attempt spent)."""

    delivery_id: int
    kind: str  # sent | retry | defer | dead
    at: float
    error: str = ""


# Parameters: (at, error or NULL, id); defer: (at, id).
_OUTCOME_SQL = {
    "sent": "UPDATE deliveries SET state = 'sent', attempts = attempts + 1, finished_at = ?,"
    " lease_until = 0, last_error = ? WHERE id = ?",
    "retry": "UPDATE deliveries SET attempts = attempts + 1, next_at = ?, lease_until = 0, last_error = ?"
    " WHERE id = ?",
    "defer": "UPDATE deliveries SET next_at = ?, lease_until = 0 WHERE id = ?",
    "dead": "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, finished_at = ?,"
    " lease_until = 0, last_error = ? WHERE id = ?",
}


@dataclass(frozen=True)
class Delivery:
    id: int
    notification_id: int
    channel: str
    attempts: int
    fingerprints: tuple[str, ...]
    body: dict[str, Any]
    received_at: float
    dedupe_key: str


class Outbox:
    """One connection shared by the router's threads behind a lock (writes are short)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000) -> None:
        self.path = path
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
        self._threads_lock = threading.Lock()
        self._new_threads: dict[tuple[str, str], str] = {}  # thread roots not yet written

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

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    # -- intake ------------------------------------------------------------------------------------

    def accept(
        self,
        dedupe_key: str,
        group_key: str,
        status: str,
        body: dict[str, Any],
        plans: Sequence[Plan],
        now: float,
    ) -> Accepted:
        """Store one notification and its deliveries (durable when this returns); see accept_many."""
        return self.accept_many([(dedupe_key, group_key, status, body, plans)], now)[0]

    def accept_many(
        self, batch: Sequence[tuple[str, str, str, dict[str, Any], Sequence[Plan]]], now: float
    ) -> list[Accepted]:
        """Store notifications (dedupe_key, group_key, status, body, plans) and their deliveries in
        one transaction: one fsync for a burst (group commit). Durable when this returns.

        A notification already stored under its dedupe key (or earlier in the batch) is a
        duplicate: nothing is added. A candidate whose channel sent the same fingerprint with the
        same status within its cooldown is left out; a status change always goes through.
        Raises StoreError.
        """
        with self._tx(intake=True) as db:
            return [self._accept_one(db, *item, now) for item in batch]

    def _accept_one(
        self,
        db: sqlite3.Connection,
        dedupe_key: str,
        group_key: str,
        status: str,
        body: dict[str, Any],
        plans: Sequence[Plan],
        now: float,
    ) -> Accepted:
        row = db.execute("SELECT id FROM notifications WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
        if row is not None:
            return Accepted(int(row["id"]), True, {})
        cur = db.execute(
            "INSERT INTO notifications (dedupe_key, group_key, status, body, received_at) VALUES (?,?,?,?,?)",
            (dedupe_key, group_key, status, json.dumps(body, separators=(",", ":")), now),
        )
        nid = int(cur.lastrowid or 0)
        states: dict[str, str] = {}
        for plan in plans:
            chosen = [c.fingerprint for c in plan.candidates if self._cooled(db, plan.channel, c, now)]
            reason = plan.skipped_reason or ("" if chosen else "cooldown: every alert was sent recently")
            state = "pending" if chosen and not plan.skipped_reason else "skipped"
            db.execute(
                "INSERT INTO deliveries (notification_id, channel, group_key, state, fingerprints,"
                " next_at, last_error, created_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    nid,
                    plan.channel,
                    group_key,
                    state,
                    json.dumps(chosen),
                    now,
                    reason or None,
                    now,
                    None if state == "pending" else now,
                ),
            )
            states[plan.channel] = state
        return Accepted(nid, False, states)

    @staticmethod
    def _cooled(db: sqlite3.Connection, channel: str, c: Candidate, now: float) -> bool:
        """Whether `c` may go to `channel` now; if so its cooldown starts again from `now`."""
        row = db.execute(
            "SELECT status, at FROM cooldowns WHERE channel = ? AND fingerprint = ?", (channel, c.fingerprint)
        ).fetchone()
        if row is not None and row["status"] == c.status and now - row["at"] < c.cooldown_seconds:
            return False
        db.execute(
            "INSERT INTO cooldowns (channel, fingerprint, status, at) VALUES (?,?,?,?)"
            " ON CONFLICT (channel, fingerprint) DO UPDATE SET status = excluded.status, at = excluded.at",
            (channel, c.fingerprint, c.status, now),
        )
        return True

    # -- sender ------------------------------------------------------------------------------------

    def release_leases(self) -> int:
        """Forget every lease: called when the router starts (the previous process is gone)."""
        with self._tx() as db:
            return db.execute("UPDATE deliveries SET lease_until = 0 WHERE state = 'pending'").rowcount

    def claim(self, channel: str, limit: int, now: float, lease_seconds: float) -> list[Delivery]:
        """Lease up to `limit` due deliveries of `channel` (oldest first, one per group)."""
        if limit <= 0:
            return []
        with self._tx() as db:
            params = {"channel": channel, "now": now, "lease_until": now + lease_seconds, "limit": limit}
            ids = [int(r[0]) for r in db.execute(_CLAIM, params).fetchall()]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows = db.execute(
                "SELECT d.id, d.notification_id, d.channel, d.attempts, d.fingerprints, n.body,"
                " n.received_at, n.dedupe_key FROM deliveries d"
                " JOIN notifications n ON n.id = d.notification_id"
                f" WHERE d.id IN ({marks}) ORDER BY d.id",
                ids,
            ).fetchall()
        return [
            Delivery(
                id=int(r["id"]),
                notification_id=int(r["notification_id"]),
                channel=r["channel"],
                attempts=int(r["attempts"]),
                fingerprints=tuple(json.loads(r["fingerprints"])),
                body=json.loads(r["body"]),
                received_at=float(r["received_at"]),
                dedupe_key=r["dedupe_key"],
            )
            for r in rows
        ]

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Record the sender's outcomes in one transaction (bookkeeping is batched: one commit for
        every send that finished while the previous commit ran). Raises StoreError."""
        if not outcomes:
            return
        with self._threads_lock:
            threads, self._new_threads = self._new_threads, {}
        try:
            with self._tx() as db:
                db.executemany(
                    "INSERT OR IGNORE INTO threads (group_key, channel, message_id) VALUES (?,?,?)",
                    [(g, c, m) for (g, c), m in threads.items()],
                )
                self._outcomes(db, outcomes)
        except StoreError:
            with self._threads_lock:  # written with the next commit instead
                self._new_threads = threads | self._new_threads
            raise

    @staticmethod
    def _outcomes(db: sqlite3.Connection, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            sql, params = _OUTCOME_SQL[o.kind], (o.at, o.error[:2000] or None, o.delivery_id)
            db.execute(sql, params if o.kind != "defer" else (o.at, o.delivery_id))

    def mark_sent(self, delivery_id: int, now: float) -> None:
        self.record([Outcome(delivery_id, "sent", now)])

    def mark_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        self.record([Outcome(delivery_id, "retry", next_at, error)])

    def defer(self, delivery_id: int, until: float) -> None:
        """Run again at `until` without spending an attempt (the channel asked for a pause)."""
        self.record([Outcome(delivery_id, "defer", until)])

    def mark_dead(self, delivery_id: int, reason: str, now: float) -> None:
        self.record([Outcome(delivery_id, "dead", now, reason)])

    def thread_root(self, group_key: str, channel: str, message_id: str) -> str:
        """The Message-Id that started `group_key`'s email thread on `channel` (this one if it is first).

        A new root is written with the next `record()` (the bookkeeping commit that records this
        very send, or an earlier one), not in a transaction of its own: one per email made the
        email senders queue on the bookkeeping lock (py-spy on bench/router.py). Order holds
        because a group's next delivery is claimable only once this one's outcome is committed."""
        key = (group_key, channel)
        with self._threads_lock:
            if key in self._new_threads:
                return self._new_threads[key]
        try:
            with self._reader_lock:
                row = self._reader.execute(
                    "SELECT message_id FROM threads WHERE group_key = ? AND channel = ?", key
                ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        if row is not None:
            return str(row["message_id"])
        with self._threads_lock:
            return self._new_threads.setdefault(key, message_id)

    def next_due(self, channel: str) -> float | None:
        rows = self._read(
            "SELECT min(max(next_at, lease_until)) FROM deliveries WHERE channel = ? AND state = 'pending'",
            (channel,),
        )
        value = rows[0][0]
        return float(value) if value is not None else None

    # -- operators ---------------------------------------------------------------------------------

    def pending_stats(self, now: float) -> dict[str, tuple[int, float]]:
        """channel -> (pending deliveries, age of the oldest in seconds)."""
        rows = self._read(
            "SELECT channel, count(*), min(created_at) FROM deliveries WHERE state = 'pending'"
            " GROUP BY channel"
        )
        return {r[0]: (int(r[1]), max(0.0, now - float(r[2]))) for r in rows}

    def deliveries(
        self, *, state: str | None = None, channel: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first, with their notification's status and alert names."""
        where, params = ["1 = 1"], []
        if state:
            where.append("d.state = ?")
            params.append(state)
        if channel:
            where.append("d.channel = ?")
            params.append(channel)
        rows = self._read(
            "SELECT d.id, d.notification_id, d.channel, d.state, d.attempts, d.next_at, d.last_error,"
            " d.created_at, d.finished_at, n.status, n.group_key FROM deliveries d"
            f" JOIN notifications n ON n.id = d.notification_id WHERE {' AND '.join(where)}"
            " ORDER BY d.id DESC LIMIT ?",
            [*params, limit],
        )
        return [dict(r) for r in rows]

    def notifications(
        self, *, status: str | None = None, channel: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The audit trail: notifications newest first, each with its deliveries."""
        where, params = ["1 = 1"], []
        if status:
            where.append("n.status = ?")
            params.append(status)
        if channel:
            where.append(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.channel = ?)"
            )
            params.append(channel)
        rows = self._read(
            f"SELECT n.id, n.status, n.group_key, n.body, n.received_at FROM notifications n"
            f" WHERE {' AND '.join(where)} ORDER BY n.id DESC LIMIT ?",
            [*params, limit],
        )
        out = []
        for r in rows:
            body = json.loads(r["body"])
            deliveries = self._read(
                "SELECT channel, state, attempts, last_error, finished_at FROM deliveries"
                " WHERE notification_id = ? ORDER BY channel",
                (r["id"],),
            )
            out.append(
                {
                    "id": r["id"],
                    "status": r["status"],
                    "group_key": r["group_key"],
                    "receiver": body.get("receiver"),
                    "received_at": r["received_at"],
                    "alerts": [
                        {
                            "name": a["labels"].get("alertname"),
                            "status": a["status"],
                            "fingerprint": a["fingerprint"],
                        }
                        for a in body["alerts"]
                    ],
                    "deliveries": [dict(d) for d in deliveries],
                }
            )
        return out

    def retry(self, *, ids: Sequence[int] = (), channel: str | None = None, now: float) -> int:
        """Put dead deliveries (all, or these ids / this channel) back as pending, due now."""
        where, params = ["state = 'dead'"], list[Any]()
        if ids:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params += list(ids)
        if channel:
            where.append("channel = ?")
            params.append(channel)
        with self._tx() as db:
            return db.execute(
                "UPDATE deliveries SET state = 'pending', next_at = ?, lease_until = 0, finished_at = NULL"
                f" WHERE {' AND '.join(where)}",
                [now, *params],
            ).rowcount

    def purge(self, *, states: Sequence[str], older_than: float) -> int:
        """Delete finished deliveries in `states` finished before `older_than` (and notifications
        left with no delivery). Pending deliveries are never purged. Returns deliveries deleted."""
        states = [s for s in states if s != "pending"]
        if not states:
            return 0
        with self._tx() as db:
            n = db.execute(
                f"DELETE FROM deliveries WHERE state IN ({','.join('?' * len(states))}) AND finished_at < ?",
                [*states, older_than],
            ).rowcount
            db.execute(
                "DELETE FROM notifications WHERE NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id)"
            )
            return n
