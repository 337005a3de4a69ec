"""The exporter's snapshot and the operations surface on PostgreSQL (mixed into PostgresStore):
memory samples, business figures, and (from .care) the database checks and care; backups are
pg_dump archives (.archive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from atlas.store.models import (
    BACKUP_KEY,
    HEARTBEAT_KEY_PREFIX,
    MAINTENANCE_KEY,
    MAX_RSS_ROWS,
    RssSample,
    StoreStats,
)
from atlas.store.postgres.care import K, PgCare
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries

S = load_queries("atlas.store.postgres", "stats.sql")


class PgOpsStore(PgCare):
    if TYPE_CHECKING:
        clock: Callable[[], float]
        url: str

        def _write(self) -> AbstractContextManager[Conn]: ...

        def _read(self) -> AbstractContextManager[Conn]: ...

        def compact_counters(self) -> bool: ...

    def stats_snapshot(self) -> StoreStats:
        snap = StoreStats()
        with self._read() as conn:
            conn.execute(S["snapshot_begin"])
            snap.items = [(r["state"], r["kind"], int(r["n"])) for r in conn.execute(S["stats_items"])]
            snap.dlq = [(r["stage"], r["error_class"], int(r["n"])) for r in conn.execute(S["stats_dlq"])]
            row = conn.execute(S["oldest_queued"]).fetchone()
            snap.oldest_queued_at = row["at"] if row else None
            row = conn.execute(S["completed"]).fetchone()
            snap.completed = int(row["n"]) if row else 0
            row = conn.execute(S["stats_contents"]).fetchone()
            if row is not None:
                snap.contents, snap.content_bytes = int(row["n"]), int(row["bytes"])
            snap.feeds = {
                ("failing" if r["failing"] else "active"): int(r["n"])
                for r in conn.execute(S["feeds_by_status"])
            }
            snap.heartbeats = [
                r["value"] for r in conn.execute(S["kv_prefix"], {"prefix": HEARTBEAT_KEY_PREFIX})
            ]
            snap.kv = {
                r["key"]: r["value"]
                for r in conn.execute(S["kv_two"], {"a": BACKUP_KEY, "b": MAINTENANCE_KEY})
            }
            row = conn.execute(S["database_bytes"]).fetchone()
            snap.db_bytes = float(row["n"]) if row else None
        return snap

    def finished_since(self, since: float) -> dict[str, int]:
        # No index on completions.at (none is wanted on the engine's write path): a scan of the
        # table, acceptable for an operator's command, not for a scrape.
        with self._read() as conn:
            return {r["outcome"]: int(r["n"]) for r in conn.execute(S["finished_since"], {"since": since})}

    def storage_bytes(self) -> dict[str, int]:
        with self._read() as conn:
            row = conn.execute(S["database_bytes"]).fetchone()
        return {"database": int(row["n"]) if row else 0, "wal": 0}

    def rss_record(
        self, samples: Sequence[RssSample], retain_seconds: float, max_rows: int = MAX_RSS_ROWS
    ) -> int:
        """Store `samples` and drop those older than `retain_seconds` or beyond the newest
        `max_rows`, in one transaction; returns how many old rows were dropped."""
        with self._write() as conn:
            if samples:
                conn.cursor().executemany(K["rss_insert"], [vars(s) for s in samples])
            params = {"before": self.clock() - retain_seconds, "max_rows": max_rows}
            return conn.execute(K["rss_prune"], params).rowcount

    def rss_history(self, since: float) -> list[RssSample]:
        """Every sample taken at or after `since`, by service then time."""
        with self._read() as conn:
            return [
                RssSample(float(r["at"]), str(r["service"]), int(r["pid"]), int(r["rss_bytes"]))
                for r in conn.execute(K["rss_history"], {"since": since})
            ]

    def routine_upkeep(self) -> dict[str, int]:
        # What PostgreSQL needs from Atlas on a schedule: the counters' delta rows folded back
        # (autovacuum and the server's own checkpoints do the rest).
        return {"counters_compacted": int(self.compact_counters())}

    def backup_to(self, dest: Path) -> None:
        """A pg_dump (custom format) of the whole database into `dest`, one consistent snapshot
        taken while other processes keep writing."""
        from atlas.store.postgres.archive import PgArchive

        PgArchive(self.url, dest.parent).copy_live(dest)
