"""`atlas-ops system check --database`: integrity, WAL size, free pages, the hot queries' plans,
and the slowest named queries of the running API and engine (p99 and mean of
atlas_db_query_duration_seconds scraped from their /metrics; information, not a verdict).

Verdicts: `ok`; `warning` (exit 1) for a WAL past WAL_WARNING_BYTES (checkpoints are not keeping
up: a reader held open, or `atlas services` not running), free pages past FREE_WARNING_SHARE of the
file (`atlas-ops database vacuum` would give them back), or a hot query that reads a whole table;
`failure` (exit 2) when PRAGMA integrity_check finds anything. A missing or old database raises
DatabaseNotReady (exit 2) and nothing is created.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from atlas.monitor.daemon import targets
from atlas.observability.metrics import CATALOG
from atlas.ops.monitoring import NothingToScrape, Scrape, scrape_all
from atlas.settings import Settings
from atlas.store import describe_database, open_store

EXIT_CODES = {"ok": 0, "warning": 1, "failure": 2}
# The WAL is checkpointed back to zero by `atlas services` every ATLAS_DB_UPKEEP_INTERVAL_SECONDS; between,
# the store's own checkpoint thread and the writers' own checkpoint at SAFETY_PAGES (64 MiB at 4 KiB
# pages) keep it under ~64-70 MiB under continuous writes (more after one very large transaction);
# twice that means checkpoints are not completing.
WAL_WARNING_BYTES = 128 << 20
# Free pages are reused by later inserts; a quarter of the file (and 16 MiB) free is worth a vacuum.
FREE_WARNING_SHARE = 0.25
FREE_WARNING_BYTES = 16 << 20
# Slowest queries: the store's named queries as timed in the processes that run them and serve
# /metrics (the API; the engine when ATLAS_CORE_METRICS_PORT is set), scraped on this machine.
QUERY_METRIC = CATALOG["atlas_db_query_duration_seconds"].name
STORE_JOBS = ("atlas-api", "atlas-core")
SLOWEST_QUERIES = 10


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over cumulative (upper bound, count) buckets in bound
    order, the last one +Inf: linear within the bucket the rank falls in; in +Inf, the highest
    finite bound (all a histogram knows). 0.0 for an empty histogram."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return 0.0
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            if cumulative == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower


def rank_queries(scrapes: list[Scrape], top: int = SLOWEST_QUERIES) -> list[dict[str, Any]]:
    """The `top` named queries by p99 (then mean) from the scraped QUERY_METRIC histograms; one
    name's histograms from several processes (API and engine) are added up, as Prometheus's
    `sum by (query, le)` would. Queries never observed are left out."""
    merged: dict[str, dict[str, Any]] = {}
    for scrape in scrapes:
        if scrape.text is None:
            continue
        for family in text_string_to_metric_families(scrape.text):
            if family.name != QUERY_METRIC:
                continue
            for sample in family.samples:
                name = sample.labels.get("query", "")
                entry = merged.setdefault(name, {"buckets": {}, "sum": 0.0, "count": 0.0, "jobs": set()})
                entry["jobs"].add(scrape.job)
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    entry["buckets"][le] = entry["buckets"].get(le, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    entry["sum"] += sample.value
                elif sample.name.endswith("_count"):
                    entry["count"] += sample.value
    rows = [
        {
            "query": name,
            "count": int(e["count"]),
            "p99_seconds": round(quantile(0.99, sorted(e["buckets"].items())), 6),
            "mean_seconds": round(e["sum"] / e["count"], 6),
            "jobs": sorted(e["jobs"]),
        }
        for name, e in merged.items()
        if e["count"] > 0
    ]
    rows.sort(key=lambda r: (r["p99_seconds"], r["mean_seconds"]), reverse=True)
    return rows[:top]


def slow_queries(settings: Settings) -> dict[str, Any]:
    """The slowest named queries of the running API and engine, from their /metrics on this
    machine (`available` False, and a message saying so, when neither answers)."""
    try:
        scrapes = scrape_all(settings, jobs=STORE_JOBS)
    except NothingToScrape as exc:
        return {
            "available": False,
            "scraped": [],
            "queries": [],
            "message": f"unknown, nothing is running: {exc}",
        }
    answered = [s.job for s in scrapes if s.text is not None]
    queries = rank_queries(scrapes)
    notes = [f"{s.job} {s.url} did not answer ({s.error})" for s in scrapes if s.text is None]
    if "atlas-core" not in targets(settings):
        notes.append("the engine serves no metrics (ATLAS_CORE_METRICS_PORT=0): its queries are not included")
    head = (
        f"top {len(queries)} by p99 of {QUERY_METRIC} from {', '.join(answered)}"
        if queries
        else f"no named query observed yet by {', '.join(answered)}"
    )
    return {
        "available": True,
        "scraped": answered,
        "queries": queries,
        "message": "; ".join([head, *notes]),
    }


def database_report(settings: Settings) -> dict[str, Any]:
    """Every check with its verdict; the report's status is the worst."""
    store = open_store(settings, migrate=False)  # DatabaseNotReady: exit 2, nothing created
    try:
        pages = store.page_facts()
        plans = store.query_plans()
        problems = store.integrity_problems()
        checked = store.integrity_check_name()
        relations = store.relation_facts()
        wal = store.storage_bytes()["wal"]
    finally:
        store.close()
    checks: list[dict[str, Any]] = []
    checks.append(
        {
            "name": "integrity",
            "status": "failure" if problems else "ok",
            "value": "ok" if not problems else len(problems),
            "message": f"{checked}: ok" if not problems else "; ".join(problems),
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
        "relations": relations,
        "wal_bytes": wal,
        "query_plans": plan_rows,
        "slow_queries": slow_queries(settings),
    }
