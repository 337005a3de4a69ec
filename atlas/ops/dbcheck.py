"""`atlas-ops system check --database`: integrity, WAL size, free pages, the hot queries' plans.

Verdicts: `ok`; `warning` (exit 1) for a WAL past WAL_WARNING_BYTES (checkpoints are not keeping
up: a reader held open, or `atlas services` not running), free pages past FREE_WARNING_SHARE of the
file (`atlas-ops database vacuum` would give them back), or a hot query that reads a whole table;
`failure` (exit 2) when PRAGMA integrity_check finds anything. A missing or old database raises
DatabaseNotReady (exit 2) and nothing is created.
"""

from __future__ import annotations

from typing import Any

from atlas.observability.metrics import CATALOG
from atlas.settings import Settings
from atlas.store import describe_database, open_store

EXIT_CODES = {"ok": 0, "warning": 1, "failure": 2}
# The WAL is checkpointed back to zero by `atlas services` every ATLAS_DB_UPKEEP_INTERVAL_SECONDS and
# SQLite's auto-checkpoint keeps it near 4 MiB between; 64 MiB means checkpoints are not completing.
WAL_WARNING_BYTES = 64 << 20
# Free pages are reused by later inserts; a quarter of the file (and 16 MiB) free is worth a vacuum.
FREE_WARNING_SHARE = 0.25
FREE_WARNING_BYTES = 16 << 20


def slow_queries() -> dict[str, Any]:
    """Slowest queries need a per-query duration metric; say whether the catalog has one."""
    names = sorted(n for n in CATALOG if "query" in n and n.endswith("_duration_seconds"))
    if names:
        return {"available": True, "metrics": names, "message": f"see {', '.join(names)}"}
    return {
        "available": False,
        "metrics": [],
        "message": "no per-query duration metric in the metrics catalog: slowest queries unknown"
        " (nearest: atlas_engine_commit_duration_seconds, atlas_exporter_store_read_duration_seconds)",
    }


def database_report(settings: Settings) -> dict[str, Any]:
    """Every check with its verdict; the report's status is the worst."""
    store = open_store(settings, migrate=False)  # DatabaseNotReady: exit 2, nothing created
    try:
        pages = store.page_facts()
        plans = store.query_plans()
        problems = store.integrity_problems()
        wal = store.storage_bytes()["wal"]
    finally:
        store.close()
    checks: list[dict[str, Any]] = []
    checks.append(
        {
            "name": "integrity",
            "status": "failure" if problems else "ok",
            "value": "ok" if not problems else len(problems),
            "message": "PRAGMA integrity_check: ok" if not problems else "; ".join(problems),
        }
    )
    checks.append(
        {
            "name": "wal_size",
            "status": "warning" if wal > WAL_WARNING_BYTES else "ok",
            "value": wal,
            "message": f"{wal / 2**20:.1f} MiB write-ahead log (warning above {WAL_WARNING_BYTES >> 20} MiB)",
        }
    )
    free_bytes = pages["freelist_count"] * pages["page_size"]
    share = pages["freelist_count"] / pages["page_count"] if pages["page_count"] else 0.0
    many = share > FREE_WARNING_SHARE and free_bytes > FREE_WARNING_BYTES
    checks.append(
        {
            "name": "free_pages",
            "status": "warning" if many else "ok",
            "value": pages["freelist_count"],
            "message": f"{pages['freelist_count']} of {pages['page_count']} pages free ({share:.0%},"
            f" {free_bytes / 2**20:.1f} MiB)"
            + ("; atlas-ops database vacuum gives them back" if many else ""),
        }
    )
    plan_rows = []
    for name, steps in plans:
        scans = [s.detail for s in steps if s.full_scan]
        plan_rows.append({"query": name, "plan": [s.detail for s in steps], "full_scans": scans})
        checks.append(
            {
                "name": f"plan: {name}",
                "status": "warning" if scans else "ok",
                "value": len(scans),
                "message": ("FULL TABLE SCAN: " + "; ".join(scans))
                if scans
                else " | ".join(s.detail for s in steps),
            }
        )
    status = max((c["status"] for c in checks), key=lambda s: EXIT_CODES[s])
    return {
        "status": status,
        "path": describe_database(settings),
        "checks": checks,
        "pages": pages,
        "wal_bytes": wal,
        "query_plans": plan_rows,
        "slow_queries": slow_queries(),
    }
