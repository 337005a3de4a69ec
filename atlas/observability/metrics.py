"""The metrics catalog: every Atlas metric is defined here once (name, help, labels, buckets).

Processes build the families they export with `build(registry, spec)`; dashboards, alert rules and
docs refer to `CATALOG`, and tests fail when they name a metric missing from it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Seconds, from 1 ms to 10 min: stages are milliseconds, accept-to-done spans retries.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Seconds, from 50 µs to 5 s: a keyed SQLite lookup takes tens of microseconds, a batch insert of
# 1,000 rows tens of milliseconds; past the 5 s busy timeout a query has failed, not run slowly.
QUERY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


CATALOG: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec(
            "atlas_engine_items_processed_total",
            "counter",
            "Attempts finished by the engine, by item kind and outcome "
            "(done, duplicate, retry, dead, died, timeout).",
            ("kind", "outcome"),
        ),
        MetricSpec(
            "atlas_engine_stage_duration_seconds",
            "histogram",
            "Time one pipeline stage took on one item.",
            ("stage",),
            LATENCY_BUCKETS,
        ),
        MetricSpec(
            "atlas_engine_accept_to_done_seconds",
            "histogram",
            "Time from an item's acceptance to its final state.",
            ("kind",),
            LATENCY_BUCKETS,
        ),
        MetricSpec(
            "atlas_engine_retries_total",
            "counter",
            "Attempts that failed and were scheduled again.",
            ("kind",),
        ),
        MetricSpec(
            "atlas_engine_dead_lettered_total",
            "counter",
            "Items moved to the dead-letter queue, by reason "
            "(max_attempts, permanent, quarantined, lease_expired).",
            ("kind", "reason"),
        ),
        MetricSpec(
            "atlas_engine_deferred_total",
            "counter",
            "Attempts put off without spending an attempt (open breaker, politeness).",
            ("kind",),
        ),
        MetricSpec(
            "atlas_engine_leases_expired_total",
            "counter",
            "Leases found expired and taken back by the reaper.",
        ),
        MetricSpec(
            "atlas_engine_worker_deaths_total",
            "counter",
            "Worker processes that died or were killed for hanging.",
            ("reason",),
        ),
        MetricSpec(
            "atlas_engine_worker_restarts_total",
            "counter",
            "Worker processes restarted, by why the last one ended: start_failed (before its pipeline"
            " was built), exit, signal, timeout (killed for no progress), heartbeat (leases lapsed).",
            ("reason",),
        ),
        MetricSpec("atlas_engine_in_flight", "gauge", "Items this engine holds leases on."),
        MetricSpec("atlas_engine_workers", "gauge", "Worker processes alive."),
        MetricSpec(
            "atlas_engine_claim_batch_size",
            "histogram",
            "Items taken by one claim transaction.",
            (),
            BATCH_BUCKETS,
        ),
        MetricSpec(
            "atlas_engine_commit_batch_size",
            "histogram",
            "Item transitions applied by one commit transaction.",
            (),
            BATCH_BUCKETS,
        ),
        MetricSpec(
            "atlas_engine_commit_duration_seconds",
            "histogram",
            "Time one commit transaction of item transitions took.",
            (),
            LATENCY_BUCKETS,
        ),
        # Per-host reliability of fetches (atlas.pipeline.hosts); host series are bounded by the LRU of
        # ATLAS_MAX_TRACKED_HOSTS and removed when a host is evicted.
        MetricSpec(
            "atlas_host_breaker_state",
            "gauge",
            "Circuit breaker state per upstream host: 0 closed, 1 half-open, 2 open.",
            ("host",),
        ),
        MetricSpec(
            "atlas_host_breaker_transitions_total",
            "counter",
            "Circuit breaker state changes per upstream host, by the state entered.",
            ("host", "to"),
        ),
        MetricSpec(
            "atlas_host_concurrency_limit", "gauge", "Adaptive (AIMD) concurrency limit per host.", ("host",)
        ),
        MetricSpec("atlas_host_in_flight", "gauge", "Requests under way per host.", ("host",)),
        MetricSpec(
            "atlas_host_rate_limited_total",
            "counter",
            "Requests held back by a host's politeness bucket, by action (wait, defer).",
            ("host", "action"),
        ),
        MetricSpec(
            "atlas_fetch_concurrency_limit", "gauge", "Adaptive (AIMD) concurrency limit over all hosts."
        ),
        MetricSpec(
            "atlas_feed_polls_total",
            "counter",
            "Feed polls by outcome (new, not_modified, unchanged, error, deferred).",
            ("outcome",),
        ),
        # HTTP metrics keep the names and labels community FastAPI dashboards use (those of
        # prometheus-fastapi-instrumentator; see atlas.api.httpmetrics for why Atlas keeps them).
        MetricSpec(
            "http_requests_total",
            "counter",
            "Requests by route template, method and status class.",
            ("handler", "status", "method"),
        ),
        MetricSpec(
            "http_request_duration_seconds",
            "histogram",
            "Request latency by route template and method.",
            ("handler", "method"),
            LATENCY_BUCKETS,
        ),
        MetricSpec(
            "http_requests_inprogress",
            "gauge",
            "Requests being served, by route template and method.",
            ("handler", "method"),
        ),
        MetricSpec(
            "atlas_api_items_accepted_total", "counter", "Items committed by the API, by kind.", ("kind",)
        ),
        MetricSpec(
            "atlas_api_shed_total",
            "counter",
            "Write requests refused to protect the system (429 backpressure or rate limit, 503 disk, "
            "maintenance or commit queue), by status.",
            ("status",),
        ),
        # API and engine (and any process with a store): read at scrape time from the store.
        MetricSpec(
            "atlas_db_locked_errors_total",
            "counter",
            "Store operations of this process that failed because SQLite stayed locked or busy past "
            'ATLAS_DB_BUSY_TIMEOUT_MS ("database is locked": another connection held the write lock).',
        ),
        MetricSpec(
            "atlas_db_query_duration_seconds",
            "histogram",
            "Time the driver took to execute one of the store's named queries (the name in its .sql "
            "file), in this process; an executemany is one observation for all its rows.",
            ("query",),
            QUERY_BUCKETS,
        ),
        MetricSpec(
            "atlas_api_commit_batch_rows",
            "histogram",
            "Items committed by one group-commit transaction.",
            (),
            BATCH_BUCKETS,
        ),
        # Exporter (exporters/): read at scrape time from the store, the data dir and /proc.
        MetricSpec(
            "atlas_build_info", "gauge", "Always 1; labels say which Atlas build runs.", ("version", "commit")
        ),
        MetricSpec(
            "atlas_exporter_store_up",
            "gauge",
            "1 when the exporter's last read of the store succeeded, else 0.",
        ),
        MetricSpec(
            "atlas_exporter_store_read_duration_seconds",
            "gauge",
            "Time the exporter's last read of the store took.",
        ),
        MetricSpec("atlas_items", "gauge", "Items in the store by state and kind.", ("state", "kind")),
        MetricSpec(
            "atlas_queue_oldest_item_age_seconds",
            "gauge",
            "Seconds since the oldest queued item was accepted (0 when none is queued).",
        ),
        MetricSpec(
            "atlas_dlq_items",
            "gauge",
            "Dead-lettered items by error fingerprint (stage:error_class); the top N by size, "
            'the rest summed as fingerprint="other".',
            ("fingerprint",),
        ),
        MetricSpec(
            "atlas_items_completed_total",
            "counter",
            "Final transitions (done, duplicate, dead) recorded in the completions journal.",
        ),
        MetricSpec("atlas_contents", "gauge", "Stored content documents."),
        MetricSpec("atlas_contents_size_bytes", "gauge", "Extracted text stored, in bytes."),
        MetricSpec("atlas_db_size_bytes", "gauge", "Size of the database file."),
        MetricSpec("atlas_db_wal_size_bytes", "gauge", "Size of the database's write-ahead log."),
        # Written by `atlas-ops backup create` and scheduled backups (kv backup.last).
        MetricSpec(
            "atlas_backup_last_success_timestamp_seconds",
            "gauge",
            "When the last verified backup finished (Unix seconds; 0 = never).",
        ),
        MetricSpec(
            "atlas_backup_last_size_bytes", "gauge", "Size of the last verified backup archive (0 = never)."
        ),
        # atlas_feeds gets a `paused` status with feed pausing: until then nothing could move it.
        MetricSpec(
            "atlas_feeds",
            "gauge",
            "Feed subscriptions by poll status: failing (last poll failed), active.",
            ("status",),
        ),
        MetricSpec("atlas_maintenance_mode", "gauge", "1 while maintenance mode is on, else 0."),
        MetricSpec(
            "atlas_maintenance_since_timestamp_seconds",
            "gauge",
            "When maintenance mode was turned on (Unix seconds); absent while it is off.",
        ),
        MetricSpec(
            "atlas_newest_heartbeat_timestamp_seconds",
            "gauge",
            "When the newest running engine's heartbeat reached the store (Unix seconds; 0 = no"
            " engine ever beat; absent while every engine is stopped cleanly).",
        ),
        MetricSpec(
            "atlas_data_dir_avail_bytes",
            "gauge",
            "Bytes available to Atlas on the data directory's filesystem (statvfs f_bavail).",
        ),
        MetricSpec("atlas_data_dir_size_bytes", "gauge", "Size of the data directory's filesystem in bytes."),
        MetricSpec(
            "atlas_memory_budget_bytes",
            "gauge",
            "ATLAS_MEMORY_BUDGET_BYTES: resident memory all Atlas processes may use together (0 = off).",
        ),
        MetricSpec(
            "atlas_process_resident_memory_bytes",
            "gauge",
            "Resident memory of an Atlas service's main process.",
            ("service",),
        ),
        MetricSpec(
            "atlas_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of an Atlas service's main process.",
            ("service",),
        ),
        MetricSpec(
            "atlas_process_open_fds", "gauge", "Open file descriptors of an Atlas service.", ("service",)
        ),
        MetricSpec(
            "atlas_process_threads", "gauge", "Threads of an Atlas service's main process.", ("service",)
        ),
        # Alert router (atlas.alerting.router); scraped as job="atlas-router". Channel label values
        # are the channel kinds of monitoring.yaml (email, webhook, slack): a bounded set.
        MetricSpec(
            "atlas_router_notifications_received_total",
            "counter",
            "Alertmanager notifications accepted (committed to the outbox), by status (firing, resolved); "
            "duplicates included.",
            ("status",),
        ),
        MetricSpec(
            "atlas_router_deliveries_total",
            "counter",
            "Delivery attempts by channel and outcome: sent, failed (will be retried), dead (given up).",
            ("channel", "outcome"),
        ),
        MetricSpec(
            "atlas_router_delivery_seconds",
            "histogram",
            "Time from a notification's acceptance to its delivery on a channel.",
            ("channel",),
            LATENCY_BUCKETS,
        ),
        MetricSpec(
            "atlas_router_outbox_depth",
            "gauge",
            "Deliveries pending in the outbox, by channel.",
            ("channel",),
        ),
        MetricSpec(
            "atlas_router_outbox_oldest_pending_seconds",
            "gauge",
            "Age of the oldest pending delivery per channel (0 when none is pending).",
            ("channel",),
        ),
        MetricSpec(
            "atlas_router_retries_total",
            "counter",
            "Delivery attempts that failed transiently and were scheduled again, by channel.",
            ("channel",),
        ),
        MetricSpec(
            "atlas_router_dedupe_hits_total",
            "counter",
            "Notifications received again (HA peer or retry) and not delivered a second time.",
        ),
        MetricSpec(
            "atlas_process_start_time_seconds",
            "gauge",
            "Start time of an Atlas service's main process (Unix seconds).",
            ("service",),
        ),
    )
}


def build(registry: CollectorRegistry | None, name: str) -> Any:
    """Create the catalog's metric `name` in `registry` (None: in no registry yet)."""
    spec = CATALOG[name]
    # prometheus_client appends _total to counters itself.
    base = spec.name[: -len("_total")] if spec.kind == "counter" else spec.name
    if spec.kind == "counter":
        return Counter(base, spec.help, spec.labels, registry=registry)
    if spec.kind == "gauge":
        return Gauge(base, spec.help, spec.labels, registry=registry)
    return Histogram(base, spec.help, spec.labels, registry=registry, buckets=spec.buckets or LATENCY_BUCKETS)


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """Record `values` in a labelled histogram (a child) as `observe` would one by one, with one
    lock per bucket touched instead of two per value: the engine records each claim's settled
    documents at once, three values a document (issue 18: prometheus_client's locks were the
    loop's top frame, and the loop shares the GIL with the store thread). Falls back to `observe`
    on a histogram without prometheus_client's buckets (another version)."""
    bounds, buckets, total = (getattr(histogram, a, None) for a in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    if not values:
        return
    added = sum(values)
    total.inc(added)
    # observe() counts a value in the first bucket whose bound is >= it (none for NaN, which
    # makes the sum NaN): bisect_left, mapped over the values in C.
    if added != added:
        values = [v for v in values if v == v]
    for index, count in Tally(map(partial(bisect_left, bounds), values)).items():
        buckets[index].inc(count)


def family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    """An empty metric family for the catalog's `name`, for collectors that read at scrape time.

    Add samples with `.add_metric(label_values, value)`; label names come from the catalog.
    """
    spec = CATALOG[name]
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    if spec.kind == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    raise ValueError(f"{name}: a scrape-time family must be a counter or gauge, not a {spec.kind}")


class LockedErrorsCollector(Collector):
    """atlas_db_locked_errors_total from a store's own count, read at scrape time (the store
    counts where it translates driver errors; it knows nothing of registries)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        counter = family("atlas_db_locked_errors_total")
        counter.add_metric([], self.read())
        yield counter


def watch_store_locks(registry: CollectorRegistry, store: object, *also: object) -> None:
    """Export `store`'s locked-error count (a backend without one reads 0), plus those of `also`
    (the API's commit process), and, when it keeps them, its named queries' durations
    (atlas_db_query_duration_seconds) in `registry`."""
    counted = (store, *also)
    registry.register(
        LockedErrorsCollector(lambda: sum(int(getattr(s, "locked_errors", 0)) for s in counted))
    )
    timings = getattr(store, "query_timings", None)
    if timings is not None:
        registry.register(timings.histogram)


class EngineMetrics:
    """The engine's metric families, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.processed = build(registry, "atlas_engine_items_processed_total")
        self.stage_duration = build(registry, "atlas_engine_stage_duration_seconds")
        self.accept_to_done = build(registry, "atlas_engine_accept_to_done_seconds")
        self.retries = build(registry, "atlas_engine_retries_total")
        self.dead_lettered = build(registry, "atlas_engine_dead_lettered_total")
        self.deferred = build(registry, "atlas_engine_deferred_total")
        self.leases_expired = build(registry, "atlas_engine_leases_expired_total")
        self.worker_deaths = build(registry, "atlas_engine_worker_deaths_total")
        self.worker_restarts = build(registry, "atlas_engine_worker_restarts_total")
        self.in_flight = build(registry, "atlas_engine_in_flight")
        self.workers = build(registry, "atlas_engine_workers")
        self.claim_batch = build(registry, "atlas_engine_claim_batch_size")
        self.commit_batch = build(registry, "atlas_engine_commit_batch_size")
        self.commit_duration = build(registry, "atlas_engine_commit_duration_seconds")


class ApiMetrics:
    """The API's own families (the instrumentator registers the http_ ones it maintains)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = build(registry, "http_requests_total")
        self.duration = build(registry, "http_request_duration_seconds")
        self.inprogress = build(registry, "http_requests_inprogress")
        self.accepted = build(registry, "atlas_api_items_accepted_total")
        self.shed = build(registry, "atlas_api_shed_total")
        self.commit_rows = build(registry, "atlas_api_commit_batch_rows")
        self._accepted: dict[str, Any] = {}

    def accepted_for(self, kind: str) -> Any:
        """atlas_api_items_accepted_total{kind}, its child kept: labels() validates and locks on
        every call, on single-item ingest's path once a request."""
        child = self._accepted.get(kind)
        if child is None:
            child = self._accepted[kind] = self.accepted.labels(kind)
        return child
