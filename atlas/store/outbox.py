"""The alert router's outbox: the logic both backends share (atlas/store/sqlite_outbox.py: SQLite
in ATLAS_DATA_DIR/alert-router.db; atlas/store/postgres/outbox.py: the shared PostgreSQL database,
so routers on several hosts dedupe against each other). `open_outbox(settings)` picks one.

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
import socket
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.errors import StoreError
from atlas.settings import Settings

OUTBOX_FILE = "alert-router.db"  # SQLite only: the outbox's file in ATLAS_DATA_DIR


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


# Parameters: (at, error or NULL, id); defer: (at, id). `?` placeholders: see Outbox._q.
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
    """The outbox's logic, written once; a backend subclass gives it transactions (`_tx`), reads
    (`_read`), its claim statement and its placeholder spelling (`_q`). Statements here bind `?`
    positionally and read rows by column name (sqlite3.Row and psycopg's dict rows both allow it);
    the INSERT ... ON CONFLICT and RETURNING forms used are spelled the same on both backends."""

    # Where the outbox is (a path, or a URL without its password), for error messages.
    where: str
    # The claim (named parameters: channel, now, lease_until, limit, owner), RETURNING id.
    _claim_sql: str
    # The two-argument maximum: max(a, b) on SQLite, greatest(a, b) on PostgreSQL.
    _greatest: str = "max"

    def __init__(self) -> None:
        self._threads_lock = threading.Lock()
        self._new_threads: dict[tuple[str, str], str] = {}  # thread roots not yet written

    # -- what a backend provides --------------------------------------------------------------

    def _q(self, sql: str) -> str:
        """`sql` with this backend's positional placeholder (SQLite takes `?` as written)."""
        return sql

    def _tx(self, intake: bool = False) -> AbstractContextManager[Any]:
        """One write transaction (intake: the notification's durable commit); raises StoreError."""
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _thread_lookup(self, group_key: str, channel: str) -> str | None:
        raise NotImplementedError

    def release_leases(self) -> int:
        """Forget the leases of this router's previous process: called when the router starts."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _exec(self, db: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return db.execute(self._q(sql), params)

    def _rowcount(self, db: Any, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._exec(db, sql, params).rowcount)

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

        A notification already stored under its dedupe key (or earlier in the batch, or by another
        router on the same database) is a duplicate: nothing is added. A candidate whose channel
        sent the same fingerprint with the same status within its cooldown is left out; a status
        change always goes through. Raises StoreError.
        """
        with self._tx(intake=True) as db:
            return [self._accept_one(db, *item, now) for item in batch]

    def _accept_one(
        self,
        db: Any,
        dedupe_key: str,
        group_key: str,
        status: str,
        body: dict[str, Any],
        plans: Sequence[Plan],
        now: float,
    ) -> Accepted:
        # Insert first, then look: on PostgreSQL a second router inserting the same key waits for
        # the first one's transaction and then inserts nothing (the unique dedupe_key decides).
        row = self._exec(
            db,
            "INSERT INTO notifications (dedupe_key, group_key, status, body, received_at) VALUES (?,?,?,?,?)"
            " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            (dedupe_key, group_key, status, json.dumps(body, separators=(",", ":")), now),
        ).fetchone()
        if row is None:
            row = self._exec(db, "SELECT id FROM notifications WHERE dedupe_key = ?", (dedupe_key,))
            row = row.fetchone()
            return Accepted(int(row["id"]), True, {})
        nid = int(row["id"])
        states: dict[str, str] = {}
        for plan in plans:
            chosen = [c.fingerprint for c in plan.candidates if self._cooled(db, plan.channel, c, now)]
            reason = plan.skipped_reason or ("" if chosen else "cooldown: every alert was sent recently")
            state = "pending" if chosen and not plan.skipped_reason else "skipped"
            self._exec(
                db,
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

    def _cooled(self, db: Any, channel: str, c: Candidate, now: float) -> bool:
        """Whether `c` may go to `channel` now; if so its cooldown starts again from `now`.

        One statement that checks and restarts the cooldown: on PostgreSQL two routers accepting
        notifications of the same alert at once each looked, saw it cooled, and both sent it. The
        upsert locks the row; the second waits for the first's commit, then its WHERE sees the
        restarted cooldown and it changes (and returns) nothing. (SQLite holds its write lock for
        the whole transaction: there, looking first was never a race.)"""
        row = self._exec(
            db,
            "INSERT INTO cooldowns (channel, fingerprint, status, at) VALUES (?,?,?,?)"
            " ON CONFLICT (channel, fingerprint) DO UPDATE SET status = excluded.status, at = excluded.at"
            " WHERE cooldowns.status <> excluded.status OR excluded.at - cooldowns.at >= ?"
            " RETURNING 1",
            (channel, c.fingerprint, c.status, now, c.cooldown_seconds),
        ).fetchone()
        return row is not None

    # -- sender ------------------------------------------------------------------------------------

    def claim(self, channel: str, limit: int, now: float, lease_seconds: float) -> list[Delivery]:
        """Lease up to `limit` due deliveries of `channel` (oldest first, one per group)."""
        if limit <= 0:
            return []
        with self._tx() as db:
            params = {
                "channel": channel,
                "now": now,
                "lease_until": now + lease_seconds,
                "limit": limit,
                "owner": self.lease_owner,
            }
            ids = [int(r["id"]) for r in db.execute(self._claim_sql, params).fetchall()]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows = self._exec(
                db,
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

    # Who holds a lease: the router's host and data directory (a restarted router releases its
    # own leases, never those of another router on the same database). Set by the backend.
    lease_owner: str = ""

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Record the sender's outcomes in one transaction (bookkeeping is batched: one commit for
        every send that finished while the previous commit ran). Raises StoreError."""
        if not outcomes:
            return
        with self._threads_lock:
            threads, self._new_threads = self._new_threads, {}
        try:
            with self._tx() as db:
                if threads:
                    db.cursor().executemany(
                        self._q(
                            "INSERT INTO threads (group_key, channel, message_id) VALUES (?,?,?)"
                            " ON CONFLICT (group_key, channel) DO NOTHING"
                        ),
                        [(g, c, m) for (g, c), m in threads.items()],
                    )
                for o in outcomes:
                    params: tuple[Any, ...] = (o.at, o.error[:2000] or None, o.delivery_id)
                    if o.kind == "defer":
                        params = (o.at, o.delivery_id)
                    self._exec(db, _OUTCOME_SQL[o.kind], params)
        except StoreError:
            with self._threads_lock:  # written with the next commit instead
                self._new_threads = threads | self._new_threads
            raise

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
        found = self._thread_lookup(group_key, channel)
        if found is not None:
            return found
        with self._threads_lock:
            return self._new_threads.setdefault(key, message_id)

    def next_due(self, channel: str) -> float | None:
        rows = self._read(
            f"SELECT min({self._greatest}(next_at, lease_until)) AS due FROM deliveries"
            " WHERE channel = ? AND state = 'pending'",
            (channel,),
        )
        value = rows[0]["due"]
        return float(value) if value is not None else None

    # -- operators ---------------------------------------------------------------------------------

    def pending_stats(self, now: float) -> dict[str, tuple[int, float]]:
        """channel -> (pending deliveries, age of the oldest in seconds)."""
        rows = self._read(
            "SELECT channel, count(*) AS n, min(created_at) AS oldest FROM deliveries"
            " WHERE state = 'pending' GROUP BY channel"
        )
        return {r["channel"]: (int(r["n"]), max(0.0, now - float(r["oldest"]))) for r in rows}

    def deliveries(
        self, *, state: str | None = None, channel: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first, with their notification's status and alert names."""
        where, params = ["1 = 1"], list[Any]()
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
        where, params = ["1 = 1"], list[Any]()
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
            return self._rowcount(
                db,
                "UPDATE deliveries SET state = 'pending', next_at = ?, lease_until = 0, finished_at = NULL"
                f" WHERE {' AND '.join(where)}",
                [now, *params],
            )

    def purge(self, *, states: Sequence[str], older_than: float) -> int:
        """Delete finished deliveries in `states` finished before `older_than` (and notifications
        left with no delivery). Pending deliveries are never purged. Returns deliveries deleted."""
        states = [s for s in states if s != "pending"]
        if not states:
            return 0
        with self._tx() as db:
            n = self._rowcount(
                db,
                f"DELETE FROM deliveries WHERE state IN ({','.join('?' * len(states))}) AND finished_at < ?",
                [*states, older_than],
            )
            self._exec(
                db,
                "DELETE FROM notifications WHERE NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id)",
            )
            return n


def open_outbox(settings: Settings) -> Outbox:
    """The router's outbox: in the shared PostgreSQL database when ATLAS_DATABASE_URL names one
    (every router on every host dedupes against the same rows), else SQLite in
    ATLAS_DATA_DIR/alert-router.db. Raises StoreError, or DatabaseNotReady when PostgreSQL is
    not migrated to this Atlas's schema (`atlas-ops database migrate`)."""
    if settings.database_backend == "postgresql":
        # Imported here: psycopg is loaded only by processes that use PostgreSQL.
        from atlas.store.postgres.outbox import PgOutbox

        return PgOutbox(
            settings.database_url,
            pool_size=min(settings.db_pool_size, 4),
            lease_owner=lease_owner(settings),
        )
    from atlas.store.sqlite_outbox import SQLiteOutbox

    return SQLiteOutbox(
        outbox_file(settings),
        synchronous=settings.db_synchronous,
        busy_timeout_ms=settings.db_busy_timeout_ms,
    )


def outbox_file(settings: Settings) -> Path:
    """The SQLite outbox's file (what `atlas-ops database migrate --to` copies from)."""
    return settings.data_dir / OUTBOX_FILE


def lease_owner(settings: Settings) -> str:
    """This router's name on its leases: host and data directory, the same after a restart."""
    return f"{socket.gethostname()}:{settings.data_dir.resolve()}"
