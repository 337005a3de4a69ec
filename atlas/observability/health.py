"""Health checks: each component reports its status, the value measured, the threshold and why.

healthy < degraded < unhealthy; the report's status is its worst component's. Checks read
numbers the API's pressure sampler already holds, plus a few cheap reads, so /health can be
polled often.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from atlas.engine.pool import STOPPED, parse_heartbeat
from atlas.settings import Settings
from atlas.store.models import HEARTBEAT_KEY_PREFIX, MAINTENANCE_KEY
from atlas.store.protocols import KVStore

ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True)
class Component:
    name: str
    status: str
    value: float | str | None
    threshold: float | str | None
    message: str


def database(store: KVStore) -> Component:
    started = time.perf_counter()
    try:
        store.kv_get(MAINTENANCE_KEY)
    except Exception as exc:  # any failure to read is the finding
        return Component("database", "unhealthy", None, None, f"cannot read: {exc}")
    took = time.perf_counter() - started
    status = "healthy" if took < 0.5 else "degraded"
    return Component("database", status, round(took, 4), 0.5, f"read in {took * 1000:.1f} ms")


def disk(free: int, low_water: int) -> Component:
    if free < low_water:
        return Component("disk", "unhealthy", free, low_water, "free space under the low-water mark")
    if free < 2 * low_water:
        return Component("disk", "degraded", free, low_water, "free space near the low-water mark")
    return Component("disk", "healthy", free, low_water, f"{free / 2**30:.1f} GiB free")


def memory() -> Component:
    vm = psutil.virtual_memory()
    pct = vm.percent
    status = "healthy" if pct < 90 else "degraded" if pct < 97 else "unhealthy"
    return Component("memory", status, pct, 90.0, f"{pct:.0f}% of system memory in use")


def engine(store: KVStore, lease_seconds: float, now: float | None = None) -> Component:
    """The engines' own word on their health (see atlas.engine.pool), from their heartbeats.

    The worst engine that beat within a lease counts: one reporting its workers failing makes
    this unhealthy even while it beats.
    """
    now = time.time() if now is None else now
    every = [parse_heartbeat(v) for _, v in store.kv_items(HEARTBEAT_KEY_PREFIX)]
    beats = [b for b in every if b[1] != STOPPED]
    if not beats:
        message = "engine stopped cleanly; none running" if every else "no engine has reported a heartbeat"
        return Component("engine", "degraded", None, lease_seconds, message)
    age = now - max(at for at, _, _ in beats)
    if age > lease_seconds:
        return Component(
            "engine", "degraded", round(age, 1), lease_seconds, "newest engine heartbeat is stale"
        )
    alive = [b for b in beats if now - b[0] <= lease_seconds]
    _, status, message = max(alive, key=lambda b: ORDER.get(b[1], 0))
    if status in ("degraded", "unhealthy"):
        return Component("engine", status, round(age, 1), lease_seconds, message)
    return Component("engine", "healthy", round(age, 1), lease_seconds, f"{len(alive)} engine(s) alive")


def backlog(queued: int, oldest_age: float, high_water: int, drain_rate: float) -> Component:
    message = f"{queued} queued, oldest {oldest_age:.0f}s, draining {drain_rate:.1f}/s"
    if high_water and queued > high_water:
        return Component("backlog", "degraded", queued, high_water, message)
    return Component("backlog", "healthy", queued, high_water or None, message)


def maintenance(state: dict[str, Any]) -> Component:
    if state.get("enabled"):
        return Component(
            "maintenance", "degraded", "on", None, str(state.get("reason") or "maintenance mode")
        )
    return Component("maintenance", "healthy", "off", None, "not in maintenance")


def report(components: list[Component]) -> dict[str, Any]:
    worst = max((c.status for c in components), key=ORDER.__getitem__, default="healthy")
    return {"status": worst, "checked_at": time.time(), "components": [asdict(c) for c in components]}


def settings_summary(settings: Settings) -> dict[str, Any]:
    return {"environment": settings.environment, "synchronous": settings.db_synchronous}
