"""Operations reads and writes on the SQLite store (mixed into SQLiteStore): RSS samples for
`monitoring analyze --memory`, business figures for `monitoring status`, file facts and query
plans for `system check --database`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas.store import sqlite_maint
from atlas.store.models import MAX_RSS_ROWS, DLQFilter, PlanStep, RssSample, StoreStats
from atlas.store.queries import load_queries
from atlas.store.sqlite_content import C
from atlas.store.sqlite_dlq import dlq_list_query
from atlas.store.sqlite_queue import Q
from atlas.store.sqlite_stats import StatsReader

OPS = load_queries("atlas.store", "ops.sql")


class OpsStore:
    if TYPE_CHECKING:
        clock: Callable[[], float]
        path: Path
        busy_timeout_ms: int

        def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    # -- RSS samples ----------------------------------------------------------------------------

    def rss_record(
        self, samples: Sequence[RssSample], retain_seconds: float, max_rows: int = MAX_RSS_ROWS
    ) -> int:
        """Store `samples` and drop those older than `retain_seconds` or beyond the newest
        `max_rows`, in one transaction; returns how many old rows were dropped."""
        with self._write() as conn:
            conn.executemany(OPS["rss_insert"], [vars(s) for s in samples])
            params = {"before": self.clock() - retain_seconds, "max_rows": max_rows}
            return conn.execute(OPS["rss_prune"], params).rowcount

    def rss_history(self, since: float) -> list[RssSample]:
        """Every sample taken at or after `since`, by service then time."""
        with self._read() as conn:
            return [RssSample(*r) for r in conn.execute(OPS["rss_history"], {"since": since})]

    # -- business figures -----------------------------------------------------------------------

    def finished_since(self, since: float) -> dict[str, int]:
        """Final transitions since `since` by outcome (done, duplicate, dead).

        completions has no index on `at` (none is wanted on the engine's write path), but its seq
        grows with `at`: a binary search of rowid seeks finds the window's first row, and only the
        window is counted.
        """
        with self._read() as conn:
            low, high = conn.execute(OPS["completions_bounds"]).fetchone()
            while low < high:  # first seq whose completion is at or after `since`
                mid = (low + high) // 2
                row = conn.execute(OPS["completion_at_or_after"], {"seq": mid}).fetchone()
                if row is None or row[1] >= since:
                    high = mid
                else:
                    low = row[0] + 1
            rows = conn.execute(OPS["finished_from"], {"seq": low, "since": since})
            return {r[0]: int(r[1]) for r in rows}

    # -- database care --------------------------------------------------------------------------

    def page_facts(self) -> dict[str, int]:
        """page_size, page_count and freelist_count (free pages a VACUUM would give back)."""
        with self._read() as conn:
            return {
                name: int(conn.execute(OPS[name]).fetchone()[0])
                for name in ("page_size", "page_count", "freelist_count")
            }

    def hot_queries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, SQL, sample parameters) of the statements the API and engine run most: their
        texts as the store runs them, so a plan shown is the plan used."""
        dlq_sql, dlq_params = dlq_list_query(DLQFilter())
        now = self.clock()
        return [
            ("claim", Q["claim"], {"owner": "o", "token": "t", "until": now, "now": now, "limit": 1}),
            ("enqueue idempotency lookup", Q["idempotency_lookup"].format("?"), {"0": "k"}),
            ("search", C["search"], {"query": '"x"', "after_rank": None, "after_seq": 0, "limit": 1}),
            ("dlq list", dlq_sql, {**dlq_params, "limit": 1}),
        ]

    def query_plans(self) -> list[tuple[str, list[PlanStep]]]:
        """(name, EXPLAIN QUERY PLAN steps) of each hot query; a step that reads every row of a
        table is marked full_scan."""
        plans = []
        with self._read() as conn:
            partial = {r[0] for r in conn.execute(OPS["partial_indexes"])}
            for name, sql, params in self.hot_queries():
                bound: Any = [params["0"]] if "0" in params else params
                details = [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bound)]
                plans.append((name, [PlanStep(d, _full_scan(d, details, partial)) for d in details]))
        return plans

    # -- database care (file operations on its own short connections: see sqlite_maint) ----------

    def integrity_problems(self) -> list[str]:
        return sqlite_maint.integrity_check(self.path)

    def integrity_check_name(self) -> str:
        return "PRAGMA integrity_check"

    def relation_facts(self) -> list[dict[str, Any]]:
        return []  # one file: page_facts says what there is to say

    def storage_bytes(self) -> dict[str, int]:
        wal = sqlite_maint.wal_path(self.path)
        return {
            "database": self.path.stat().st_size if self.path.exists() else 0,
            "wal": wal.stat().st_size if wal.exists() else 0,
        }

    def optimize(self) -> dict[str, int]:
        return sqlite_maint.optimize(self.path)

    def vacuum(self, *, reserve_bytes: int) -> dict[str, int]:
        return sqlite_maint.vacuum(self.path, reserve_bytes=reserve_bytes)

    def routine_upkeep(self) -> dict[str, int]:
        return sqlite_maint.routine_upkeep(self.path)

    def backup_to(self, dest: Path) -> None:
        sqlite_maint.online_copy(self.path, dest)

    # -- the exporter's snapshot ----------------------------------------------------------------

    def stats_snapshot(self) -> StoreStats:
        # Its own read-only connection (sqlite_stats): it follows a restore's new file and never
        # holds the store's per-thread connections in a transaction.
        reader: StatsReader | None = getattr(self, "_stats_reader", None)
        if reader is None:
            # A short busy timeout, as the exporter always had: a scrape must not hang on a lock.
            reader = StatsReader(self.path, min(self.busy_timeout_ms, 1000))
            self._stats_reader = reader
        return reader.read()


def _full_scan(detail: str, plan: list[str], partial: set[str]) -> bool:
    """Whether a plan step reads every row of a table.

    `SCAN items` (or an alias: `SCAN c`) does; so does `SCAN items USING [COVERING] INDEX i` when
    i covers the whole table (a walk for ORDER BY that filters row by row). Not full: a walk of a
    partial index (items_due holds queued items only), `SEARCH ...`, `SCAN t VIRTUAL TABLE ...`
    (FTS5's own index), `SCAN CONSTANT ROW`, and a scan of a subquery's result (`MATERIALIZE g`
    or `CO-ROUTINE g`, then `SCAN g`).
    """
    words = detail.split()
    if len(words) < 2 or words[0] != "SCAN" or words[1] == "CONSTANT":
        return False
    built = {
        d.split()[1] for d in plan if d.startswith(("MATERIALIZE ", "CO-ROUTINE ")) and len(d.split()) > 1
    }
    if words[1] in built:
        return False
    if len(words) == 2:
        return True
    rest = words[2:]
    if rest[:2] == ["USING", "INDEX"] or rest[:3] == ["USING", "COVERING", "INDEX"]:
        index = rest[2] if rest[1] == "INDEX" else rest[3]
        return index not in partial
    return False  # VIRTUAL TABLE, or a form this SQLite prints that is not a scan of rows
