"""The exporter's snapshot and the operations surface on PostgreSQL (mixed into PostgresStore).

SQLite's file care (integrity check, WAL checkpoint, VACUUM, the online backup API, memory
samples, query plans) has no PostgreSQL equivalent here yet: those raise StoreError naming what
is missing, so `atlas-ops` says so instead of doing something else (issue 17 lists them).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from atlas.errors import StoreError
from atlas.store.models import (
    BACKUP_KEY,
    HEARTBEAT_KEY_PREFIX,
    MAINTENANCE_KEY,
    PlanStep,
    RssSample,
    StoreStats,
)
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries

S = load_queries("atlas.store.postgres", "stats.sql")


def _unsupported(what: str) -> StoreError:
    return StoreError(f"not supported on PostgreSQL yet: {what}")


class PgOpsStore:
    if TYPE_CHECKING:

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

    def rss_record(self, samples: Sequence[RssSample], retain_seconds: float, max_rows: int = 0) -> int:
        raise _unsupported("memory samples (monitoring analyze --memory)")

    def rss_history(self, since: float) -> list[RssSample]:
        raise _unsupported("memory samples (monitoring analyze --memory)")

    def page_facts(self) -> dict[str, int]:
        raise _unsupported("page facts (system check --database)")

    def query_plans(self) -> list[tuple[str, list[PlanStep]]]:
        raise _unsupported("query plans (system check --database)")

    def integrity_problems(self) -> list[str]:
        raise _unsupported("integrity check (system check --database)")

    def optimize(self) -> dict[str, int]:
        raise _unsupported("database optimize (run ANALYZE; autovacuum does the rest)")

    def vacuum(self, *, reserve_bytes: int) -> dict[str, int]:
        raise _unsupported("database vacuum (autovacuum runs on its own)")

    def routine_upkeep(self) -> dict[str, int]:
        # What PostgreSQL needs from Atlas on a schedule: the counters' delta rows folded back
        # (autovacuum and the server's own checkpoints do the rest).
        return {"counters_compacted": int(self.compact_counters())}

    def backup_to(self, dest: Path) -> None:
        raise _unsupported("online backup copy (pg_dump archives)")
