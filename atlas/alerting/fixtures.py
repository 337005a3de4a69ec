"""Input series that make each built-in signal read a chosen value, for the generated promtool tests.

A fixture turns a target value into raw series as the exporter, API, engine and router export
them (the recording rule is exercised too, not bypassed). Each series is one of:

- ("gauge", v): constant v;
- ("counter", r): increases by r per second, continuing from where the previous phase left it;
- ("age", a): a Unix timestamp `a` seconds in the past at every instant (value = t - a);
- ("decline", h): bytes that run out in `h` hours at DECLINE_BYTES_PER_SECOND.

`ramp` fixtures are absolute counter rates: from a series' first sample the value rises linearly
to the target over the signal's window (Prometheus extrapolates no further back than a counter's
zero); every other fixture reads its target from its first evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from atlas.observability.metrics import LATENCY_BUCKETS

DECLINE_BYTES_PER_SECOND = 1_000_000.0
EXPORTER = {"job": "node", "instance": "atlas:9110"}
API = {"job": "atlas-api", "instance": "atlas:8000"}
CORE = {"job": "atlas-core", "instance": "atlas:9112"}
ROUTER = {"job": "atlas-alert-router", "instance": "atlas:9111"}
SLOTS = 5  # hosts / targets a count fixture has, of which `target` are bad

Series = tuple[str, str, float]  # selector, kind, parameter


@dataclass(frozen=True)
class Fixture:
    series: Callable[[float], list[Series]]
    labels: dict[str, str]  # the labels the alert carries from these series
    ramp: bool = False
    integral: bool = False  # the value is a whole number (a count of series)


def le(bound: float) -> str:
    """A histogram bucket's `le` label as prometheus_client writes it (60 -> "60.0")."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def sel(name: str, base: dict[str, str], **labels: str) -> str:
    merged = {**base, **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(merged.items())) + "}"


def _gauge(name: str, base: dict[str, str], **labels: str) -> Callable[[float], list[Series]]:
    return lambda v: [(sel(name, base, **labels), "gauge", v)]


def _age(name: str, base: dict[str, str]) -> Callable[[float], list[Series]]:
    return lambda v: [(sel(name, base), "age", v)]


def _slots(
    name: str, base: dict[str, str], label: str, bad: float, good: float
) -> Callable[[float], list[Series]]:
    def series(v: float) -> list[Series]:
        if v > SLOTS:
            raise ValueError(f"{name}: a test needs at most {SLOTS} bad series, not {v:g}")
        return [
            (sel(name, base, **{label: f"s{k}"}), "gauge", bad if k < round(v) else good)
            for k in range(SLOTS)
        ]

    return series


def _histogram(name: str, base: dict[str, str]) -> Callable[[float], list[Series]]:
    """Observations placed so that the interpolated 99th percentile is exactly `v` seconds."""

    def series(v: float) -> list[Series]:
        bounds = [0.0, *LATENCY_BUCKETS]
        i = next(k for k in range(1, len(bounds)) if bounds[k - 1] <= v < bounds[k])
        lo, hi = bounds[i - 1], bounds[i]
        x = (v - lo) / (hi - lo)  # where in the bucket the 99th percentile must land
        if x >= 0.99:
            raise ValueError(f"{name}: {v:g}s is too close to a bucket bound for an exact test")
        below = (0.99 - x) / (1 - x)  # share of observations at or under `lo`
        total = 10.0
        # Every bucket, cumulative, whatever the target: the series stay the same across phases.
        out = []
        for bound in [*LATENCY_BUCKETS, math.inf]:
            rate = total if bound >= hi else total * below if bound >= lo and lo > 0 else 0.0
            out.append((sel(f"{name}_bucket", base, le=le(bound)), "counter", rate))
        return out

    return series


def _ratio(
    name: str, base: dict[str, str], bad: dict[str, str], good: dict[str, str], inverse: bool = False
) -> Callable[[float], list[Series]]:
    """Two counters whose rates make `bad` v percent of the total (or `good`, when `inverse`)."""

    def series(v: float) -> list[Series]:
        share = 1 - v / 100 if inverse else v / 100
        return [
            (sel(name, base, **bad), "counter", 10 * share),
            (sel(name, base, **good), "counter", 10 * (1 - share)),
        ]

    return series


FIXTURES: dict[str, Fixture] = {
    "queue_backlog": Fixture(
        _gauge("atlas_items", EXPORTER, state="queued", kind="url"), {"instance": EXPORTER["instance"]}
    ),
    "oldest_queued_age": Fixture(
        _gauge("atlas_queue_oldest_item_age_seconds", EXPORTER), {"instance": EXPORTER["instance"]}
    ),
    "engine_heartbeat_age": Fixture(
        _age("atlas_newest_heartbeat_timestamp_seconds", EXPORTER), {"instance": EXPORTER["instance"]}
    ),
    "engine_worker_restarts": Fixture(
        lambda v: [(sel("atlas_engine_worker_restarts_total", CORE, reason="exit"), "counter", v / 900)],
        {"job": "atlas-core"},
        ramp=True,
    ),
    "db_locked_errors": Fixture(
        lambda v: [(sel("atlas_db_locked_errors_total", API), "counter", v / 300)],
        {"job": "atlas-api"},
        ramp=True,
    ),
    "dead_letters": Fixture(
        _gauge("atlas_dlq_items", EXPORTER, fingerprint="fetch:HTTPStatusError"),
        {"instance": EXPORTER["instance"]},
    ),
    "dead_letter_rate": Fixture(
        lambda v: [
            (
                sel("atlas_engine_dead_lettered_total", CORE, kind="url", reason="max_attempts"),
                "counter",
                v / 3600,
            )
        ],
        {"job": "atlas-core"},
        ramp=True,
    ),
    "processing_success_rate": Fixture(
        lambda v: [
            *_ratio(
                "atlas_engine_items_processed_total",
                CORE,
                {"kind": "url", "outcome": "dead"},
                {"kind": "url", "outcome": "done"},
                inverse=True,
            )(v),
            (sel("atlas_engine_items_processed_total", CORE, kind="url", outcome="retry"), "counter", 3.0),
        ],
        {"job": "atlas-core"},
    ),
    "circuit_open_hosts": Fixture(
        _slots("atlas_host_breaker_state", CORE, "host", 2, 0), {"job": "atlas-core"}, integral=True
    ),
    "feeds_failing": Fixture(
        lambda v: [
            (sel("atlas_feeds", EXPORTER, status="failing"), "gauge", v),
            (sel("atlas_feeds", EXPORTER, status="active"), "gauge", 3),
        ],
        {"instance": EXPORTER["instance"]},
    ),
    "maintenance_age": Fixture(
        _age("atlas_maintenance_since_timestamp_seconds", EXPORTER), {"instance": EXPORTER["instance"]}
    ),
    "api_error_rate": Fixture(
        _ratio(
            "http_requests_total",
            API,
            {"handler": "/v1/items", "method": "POST", "status": "5xx"},
            {"handler": "/v1/items", "method": "POST", "status": "2xx"},
        ),
        {"job": "atlas-api"},
    ),
    "api_latency_p99": Fixture(
        _histogram("http_request_duration_seconds", {**API, "handler": "/v1/items", "method": "POST"}),
        {"job": "atlas-api"},
    ),
    "target_down": Fixture(_slots("up", CORE, "instance", 0, 1), {"job": "atlas-core"}, integral=True),
    "notification_failures": Fixture(
        lambda v: [
            (
                sel("atlas_router_deliveries_total", ROUTER, channel="email", outcome="failed"),
                "counter",
                v / 900,
            ),
            (sel("atlas_router_deliveries_total", ROUTER, channel="email", outcome="sent"), "counter", 1.0),
        ],
        {"channel": "email"},
        ramp=True,
    ),
    "db_latency_p99": Fixture(
        _histogram("atlas_engine_commit_duration_seconds", CORE), {"job": "atlas-core"}
    ),
    "cpu_usage": Fixture(
        lambda v: [
            (sel("node_cpu_seconds_total", EXPORTER, cpu="0", mode="idle"), "counter", 1 - v / 100),
            (sel("node_cpu_seconds_total", EXPORTER, cpu="0", mode="user"), "counter", v / 100),
        ],
        {"instance": EXPORTER["instance"]},
    ),
    "memory_usage": Fixture(
        lambda v: [
            (sel("node_memory_MemTotal_bytes", EXPORTER), "gauge", 8e9),
            (sel("node_memory_MemAvailable_bytes", EXPORTER), "gauge", 8e9 * (1 - v / 100)),
        ],
        dict(EXPORTER),
    ),
    "atlas_memory": Fixture(
        lambda v: [
            (sel("atlas_memory_budget_bytes", EXPORTER), "gauge", float(1 << 30)),
            (
                sel("atlas_process_resident_memory_bytes", EXPORTER, service="atlas-core"),
                "gauge",
                (1 << 30) * v / 100,
            ),
        ],
        {"instance": EXPORTER["instance"]},
    ),
    "disk_usage": Fixture(
        lambda v: [
            (sel("atlas_data_dir_size_bytes", EXPORTER), "gauge", 1e11),
            (sel("atlas_data_dir_avail_bytes", EXPORTER), "gauge", 1e11 * (1 - v / 100)),
        ],
        {"instance": EXPORTER["instance"]},
    ),
    "disk_free": Fixture(_gauge("atlas_data_dir_avail_bytes", EXPORTER), {"instance": EXPORTER["instance"]}),
    "disk_fill_hours": Fixture(
        lambda v: [(sel("atlas_data_dir_avail_bytes", EXPORTER), "decline", v)],
        {"instance": EXPORTER["instance"]},
    ),
    "backup_age": Fixture(
        _age("atlas_backup_last_success_timestamp_seconds", EXPORTER), {"instance": EXPORTER["instance"]}
    ),
}
