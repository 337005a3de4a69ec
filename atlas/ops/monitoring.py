"""`atlas-ops monitoring status|metrics|analyze --memory`: what the commands compute, without a
terminal.

status   the monitoring agent's health checks (atlas.monitor.health) plus the business figures
         read from the store: backlog by state, the DLQ, finished in the last hour, the oldest
         queued item's age.
metrics  a scrape of every Atlas /metrics endpoint this installation serves (the agent's targets).
memory   RSS history per service from the samples `atlas services` records, with a growth verdict.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from atlas.errors import AtlasError
from atlas.monitor.daemon import targets
from atlas.monitor.health import agent_report
from atlas.ops.services import ServiceManager
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.models import RssSample

SCRAPE_TIMEOUT_SECONDS = 3.0
HOUR_SECONDS = 3600.0


class NothingToScrape(AtlasError):
    """No Atlas /metrics endpoint answered."""


def business(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Backlog by state, dead items, final transitions in the last hour, the oldest queued item's
    age. Raises DatabaseNotReady for a missing or old database (nothing is created)."""
    now = time.time() if now is None else now
    store = open_store(settings, migrate=False)
    try:
        by_state: dict[str, int] = {}
        for (state, _kind), n in store.counts().items():
            by_state[state] = by_state.get(state, 0) + n
        oldest = store.queue_stats()["oldest_queued_at"]
        finished = store.finished_since(now - HOUR_SECONDS)
    finally:
        store.close()
    return {
        "backlog": {s: by_state.get(s, 0) for s in ("queued", "leased")},
        "items_by_state": dict(sorted(by_state.items())),
        "dlq": by_state.get("dead", 0),
        "finished_last_hour": finished,
        "done_last_hour": finished.get("done", 0) + finished.get("duplicate", 0),
        "oldest_queued_age_seconds": round(now - oldest, 1) if oldest else 0.0,
    }


def status_report(settings: Settings, manager: ServiceManager | None) -> dict[str, Any]:
    """Every component's health (status: the worst) and the business figures."""
    figures = business(settings)  # first: a missing database is exit 2 before any probing
    report = agent_report(settings, manager)
    return {"status": report["status"], "components": report["components"], "business": figures}


@dataclass
class Scrape:
    job: str
    url: str
    text: str | None  # the exposition as served; None when the target did not answer
    error: str | None = None


def scrape_all(
    settings: Settings, timeout: float = SCRAPE_TIMEOUT_SECONDS, jobs: Collection[str] | None = None
) -> list[Scrape]:
    """Every target's /metrics (with `jobs`, only those jobs'). Raises NothingToScrape (naming
    each URL tried) when none answers."""
    found = []
    with httpx.Client(timeout=timeout) as client:
        for job, url in targets(settings).items():
            if jobs is not None and job not in jobs:
                continue
            try:
                r = client.get(url)
                r.raise_for_status()
                found.append(Scrape(job, url, r.text))
            except httpx.HTTPError as exc:
                found.append(Scrape(job, url, None, f"{type(exc).__name__}: {exc}"))
    if not any(s.text is not None for s in found):
        tried = "; ".join(f"{s.job} {s.url} ({s.error})" for s in found)
        raise NothingToScrape(
            f"no Atlas metrics endpoint answered (is Atlas running? atlas-ops service status): {tried}"
        )
    return found


def samples(scrapes: list[Scrape], word: str | None) -> list[dict[str, Any]]:
    """One row per sample: job, name, labels, value; with `word`, only samples whose name
    contains it (case-insensitive), as `--filter memory` finds every *memory* metric."""
    rows = []
    for s in scrapes:
        if s.text is None:
            continue
        for family in text_string_to_metric_families(s.text):
            for sample in family.samples:
                if word and word.lower() not in sample.name.lower():
                    continue
                rows.append(
                    {"job": s.job, "name": sample.name, "labels": sample.labels, "value": sample.value}
                )
    return rows


def exposition(scrapes: list[Scrape], word: str | None) -> str:
    """The scraped text as served, each target under a `# job:` comment; with `word`, only the
    HELP, TYPE and sample lines of metrics whose name contains it."""
    out = []
    for s in scrapes:
        if s.text is None:
            continue
        out.append(f"# job: {s.job} ({s.url})")
        out += [line for line in s.text.splitlines() if not word or word.lower() in _metric(line).lower()]
    return "\n".join(out)


def _metric(line: str) -> str:
    """The metric a line of the text format is about ('' for other comments and blank lines)."""
    if line.startswith(("# HELP ", "# TYPE ")):
        return line.split()[2] if len(line.split()) > 2 else ""
    if not line or line.startswith("#"):
        return ""
    return line.split("{", 1)[0].split(" ", 1)[0]


# -- memory growth ---------------------------------------------------------------------------------

# A process whose RSS rises faster than this, fitted over its current run, is "growing". 1 MiB an
# hour is 24 MiB a day: below that, allocator noise and caches warming up dominate.
GROWTH_MB_PER_HOUR = 1.0
MIN_SAMPLES = 3
MIN_SPAN_SECONDS = 60.0


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per hour."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * HOUR_SECONDS


def analyze_memory(
    history: list[RssSample], threshold_mb_per_hour: float = GROWTH_MB_PER_HOUR
) -> list[dict[str, Any]]:
    """Per service: samples, first/last/peak RSS in MB, and the growth rate (MB/hour, least
    squares) over its current run (samples of its latest pid: a restart starts memory afresh),
    with a verdict: growing, stable, or insufficient data (fewer than MIN_SAMPLES samples or
    MIN_SPAN_SECONDS of the current run)."""
    by_service: dict[str, list[RssSample]] = {}
    for s in history:
        by_service.setdefault(s.service, []).append(s)
    rows = []
    for service, points in sorted(by_service.items()):
        points.sort(key=lambda s: s.at)
        current = [p for p in points if p.pid == points[-1].pid]
        mb = [(p.at, p.rss_bytes / 1e6) for p in current]
        span = current[-1].at - current[0].at
        enough = len(current) >= MIN_SAMPLES and span >= MIN_SPAN_SECONDS
        rate = slope_per_hour(mb) if len(current) >= 2 else 0.0
        verdict = (
            "insufficient data" if not enough else "growing" if rate > threshold_mb_per_hour else "stable"
        )
        rows.append(
            {
                "service": service,
                "pid": current[-1].pid,
                "samples": len(points),
                "restarts": len({p.pid for p in points}) - 1,
                "span_hours": round(span / HOUR_SECONDS, 3),
                "first_mb": round(current[0].rss_bytes / 1e6, 1),
                "last_mb": round(current[-1].rss_bytes / 1e6, 1),
                "peak_mb": round(max(p.rss_bytes for p in points) / 1e6, 1),
                "rate_mb_per_hour": round(rate, 2),
                "verdict": verdict,
                "history": [{"at": p.at, "pid": p.pid, "rss_bytes": p.rss_bytes} for p in points],
            }
        )
    return rows


def memory_report(settings: Settings, hours: float, now: float | None = None) -> list[dict[str, Any]]:
    """analyze_memory over the last `hours`. Raises DatabaseNotReady (nothing is created)."""
    now = time.time() if now is None else now
    store = open_store(settings, migrate=False)
    try:
        history = store.rss_history(now - hours * HOUR_SECONDS)
    finally:
        store.close()
    return analyze_memory(history)
