"""The router's outbox in the shared PostgreSQL database (tables from migration 0004), so every
router on every host dedupes against the same notifications; the logic is atlas.store.outbox.Outbox.

Concurrency rests on the database, not on a file lock as on SQLite: a second router inserting the
same dedupe_key waits for the first one's transaction and then inserts nothing (ON CONFLICT DO
NOTHING); claims lock their rows FOR UPDATE SKIP LOCKED, so two routers never lease one delivery.
Each method is one transaction on a pooled connection (atlas/store/postgres/connection.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from atlas.store.outbox import Outbox
from atlas.store.postgres.connection import Conn, Connections

# As on SQLite (the oldest pending delivery of each channel and group is the only one claimable),
# plus SKIP LOCKED: rows another router is leasing right now are passed over, not waited for.
# The pick is a MATERIALIZED CTE, run once: as `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR
# UPDATE SKIP LOCKED)` the planner may run the subquery again, and a claim of 1 leased 2 (seen in CI).
_CLAIM = """
WITH picked AS MATERIALIZED (
    SELECT d.id FROM deliveries d
    WHERE d.channel = %(channel)s AND d.state = 'pending' AND d.next_at <= %(now)s
      AND d.lease_until <= %(now)s
      AND d.id = (SELECT min(d2.id) FROM deliveries d2
                  WHERE d2.channel = d.channel AND d2.group_key = d.group_key AND d2.state = 'pending')
    ORDER BY d.id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries SET lease_until = %(lease_until)s, lease_owner = %(owner)s
FROM picked WHERE deliveries.id = picked.id
RETURNING deliveries.id
"""


class PgOutbox(Outbox):
    """The outbox on a small pool of its own (the router's intake, senders and scrapes)."""

    _claim_sql = _CLAIM
    _greatest = "greatest"

    def __init__(self, url: str, *, pool_size: int, lease_owner: str) -> None:
        super().__init__()
        self.db = Connections(url, pool_size=pool_size)
        self.where = self.db.where
        self.lease_owner = lease_owner
        try:
            # The tables come with the store's migrations (`atlas-ops database migrate`); a router
            # does not migrate a database the API and engine own.
            self.db.check_schema()
        except BaseException:
            self.db.close()
            raise

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")  # the shared statements hold no literal `?`

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self, intake: bool = False) -> Iterator[Conn]:
        with self.db.transaction() as conn:  # one transaction: the pool commits it at the end
            yield conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._tx() as conn:
            return conn.execute(self._q(sql), params).fetchall()

    def _thread_lookup(self, group_key: str, channel: str) -> str | None:
        sql = "SELECT message_id FROM threads WHERE group_key = ? AND channel = ?"
        rows = self._read(sql, (group_key, channel))
        return str(rows[0]["message_id"]) if rows else None

    def release_leases(self) -> int:
        """Forget this router's own leases (its previous process is gone); another router's
        leases on the same database stay: that router is alive and sending them."""
        with self._tx() as conn:
            return int(
                conn.execute(
                    "UPDATE deliveries SET lease_until = 0 WHERE state = 'pending' AND lease_owner = %s",
                    (self.lease_owner,),
                ).rowcount
            )
