"""What each alerting.yaml signal measures, as PromQL over the metrics catalog.

Every signal is one recording rule (named `level:metric:operations`, Prometheus's convention) whose
value is in the signal's unit; an alert compares that recorded series with a threshold. The
recorded series is what a dashboard plots next to the threshold lines, and the monitoring agent
evaluates the same definitions.

Jobs are those of config/prometheus.yml: `node` (the Atlas exporter, under node_exporter's job
name), `atlas-api`, `atlas-core`, `atlas-alert-router`.
"""

from __future__ import annotations

from dataclasses import dataclass

# Units a threshold may be written in, and how a value of that unit is shown in an annotation
# (Prometheus template functions; see atlas.alerting.humanize for their Python twins).
UNIT_FORMAT = {
    "percent": ("humanize", "%"),
    "count": ("humanize", ""),
    "per_hour": ("humanize", "/h"),
    "seconds": ("humanizeDuration", ""),
    "bytes": ("humanize1024", "B"),
    "hours": ("humanize", "h"),
}
ATLAS_JOBS = 'job=~"node|atlas-.+"'


@dataclass(frozen=True)
class Signal:
    """What an alert measures: its unit, which way is bad, the allowed threshold range, and the
    recording rule (`record` = `expr`) that measures it. `by` are the labels the value keeps (and
    so the labels an alert carries); `window_seconds` is how far back `expr` looks."""

    unit: str  # a key of UNIT_FORMAT
    direction: str  # above | below: the alert fires when the value is above (below) a threshold
    doc: str
    hi: float = 1e15
    record: str = ""
    expr: str = ""
    by: tuple[str, ...] = ()
    window_seconds: float = 0.0
    # ">" / "<" by default; ">=" for counts where "at least N" is what an operator writes
    # (`target_down: critical: 1` = one target down is critical).
    op: str = ""
    title: str = ""  # the summary's subject, e.g. "queue backlog"

    @property
    def comparison(self) -> str:
        return self.op or (">" if self.direction == "above" else "<")


def _rate_ratio(numerator: str, denominator: str, by: str, window: str) -> str:
    return (
        f"100 * sum by ({by}) (rate({numerator}[{window}]))\n"
        f"  / sum by ({by}) (rate({denominator}[{window}]))"
    )


SIGNALS: dict[str, Signal] = {
    # Ingest and engine ---------------------------------------------------------------------------
    "queue_backlog": Signal(
        "count",
        "above",
        "Items queued (atlas_items{state=queued}).",
        record="instance:atlas_items_queued:sum",
        expr='sum by (instance) (atlas_items{state="queued"})',
        by=("instance",),
        title="queue backlog",
    ),
    "oldest_queued_age": Signal(
        "seconds",
        "above",
        "Age of the oldest queued item.",
        record="instance:atlas_queue_oldest_item_age_seconds:max",
        expr="max by (instance) (atlas_queue_oldest_item_age_seconds)",
        by=("instance",),
        title="oldest queued item age",
    ),
    "engine_heartbeat_age": Signal(
        "seconds",
        "above",
        "Time since the newest engine heartbeat reached the store (no engine: since 1970).",
        record="instance:atlas_engine_heartbeat_age_seconds:time_minus_max",
        expr="time() - max by (instance) (atlas_newest_heartbeat_timestamp_seconds)",
        by=("instance",),
        title="engine heartbeat age",
    ),
    "engine_worker_restarts": Signal(
        "count",
        "above",
        "Engine worker processes restarted in the last 15 minutes (crash-looping workers).",
        record="job:atlas_engine_worker_restarts:increase15m",
        expr="sum by (job) (increase(atlas_engine_worker_restarts_total[15m]))",
        by=("job",),
        window_seconds=900,
        op=">=",
        title="engine worker restarts",
    ),
    "dead_letters": Signal(
        "count",
        "above",
        "Items in the dead-letter queue.",
        record="instance:atlas_dlq_items:sum",
        expr="sum by (instance) (atlas_dlq_items)",
        by=("instance",),
        title="dead-letter queue size",
    ),
    "dead_letter_rate": Signal(
        "per_hour",
        "above",
        "Items dead-lettered per hour, over the last 15 minutes.",
        record="job:atlas_engine_dead_lettered:rate15m_per_hour",
        expr="3600 * sum by (job) (rate(atlas_engine_dead_lettered_total[15m]))",
        by=("job",),
        window_seconds=900,
        title="dead-letter rate",
    ),
    "processing_success_rate": Signal(
        "percent",
        "below",
        "Share of items finishing done or duplicate (of done, duplicate and dead), last 15 minutes.",
        100,
        record="job:atlas_engine_items_processed_success:ratio_rate15m",
        expr=_rate_ratio(
            'atlas_engine_items_processed_total{outcome=~"done|duplicate"}',
            'atlas_engine_items_processed_total{outcome=~"done|duplicate|dead"}',
            "job",
            "15m",
        ),
        by=("job",),
        window_seconds=900,
        title="processing success rate",
    ),
    "circuit_open_hosts": Signal(
        "count",
        "above",
        "Upstream hosts whose circuit breaker is open (atlas_host_breaker_state == 2).",
        record="job:atlas_host_breaker_open:count",
        expr="count by (job) (atlas_host_breaker_state == 2)",
        by=("job",),
        op=">=",
        title="upstream hosts with an open circuit breaker",
    ),
    "feeds_failing": Signal(
        "count",
        "above",
        "Feed subscriptions whose last poll failed.",
        record="instance:atlas_feeds_failing:sum",
        expr='sum by (instance) (atlas_feeds{status="failing"})',
        by=("instance",),
        op=">=",
        title="failing feeds",
    ),
    "maintenance_age": Signal(
        "seconds",
        "above",
        "How long maintenance mode has been on.",
        record="instance:atlas_maintenance_age_seconds:time_minus_max",
        expr="time() - max by (instance) (atlas_maintenance_since_timestamp_seconds)",
        by=("instance",),
        title="maintenance mode on for",
    ),
    # API -----------------------------------------------------------------------------------------
    "api_error_rate": Signal(
        "percent",
        "above",
        "Share of API requests answered 5xx, last 5 minutes.",
        100,
        record="job:http_requests_5xx:ratio_rate5m",
        expr=_rate_ratio(
            'http_requests_total{job="atlas-api",status="5xx"}',
            'http_requests_total{job="atlas-api"}',
            "job",
            "5m",
        ),
        by=("job",),
        window_seconds=300,
        title="API error rate",
    ),
    "api_latency_p99": Signal(
        "seconds",
        "above",
        "99th percentile API request duration, last 5 minutes.",
        record="job:http_request_duration_seconds:p99_rate5m",
        expr="histogram_quantile(0.99,\n"
        '  sum by (job, le) (rate(http_request_duration_seconds_bucket{job="atlas-api"}[5m])))',
        by=("job",),
        window_seconds=300,
        title="API p99 latency",
    ),
    "target_down": Signal(
        "count",
        "above",
        "Atlas scrape targets (API, engine, exporter, router) Prometheus cannot scrape, per job.",
        record="job:up_down:count",
        expr=f"count by (job) (up{{{ATLAS_JOBS}}} == 0)",
        by=("job",),
        op=">=",
        title="scrape targets down",
    ),
    "notification_failures": Signal(
        "count",
        "above",
        "Alert router deliveries that failed or were given up, per channel, last 15 minutes.",
        record="channel:atlas_router_deliveries_failed:increase15m",
        expr='sum by (channel) (increase(atlas_router_deliveries_total{outcome=~"failed|dead"}[15m]))',
        by=("channel",),
        window_seconds=900,
        op=">=",
        title="failed notification deliveries",
    ),
    # Database ------------------------------------------------------------------------------------
    "db_latency_p99": Signal(
        "seconds",
        "above",
        "99th percentile time of the engine's commit transactions, last 5 minutes (database slow).",
        record="job:atlas_engine_commit_duration_seconds:p99_rate5m",
        expr="histogram_quantile(0.99,\n"
        "  sum by (job, le) (rate(atlas_engine_commit_duration_seconds_bucket[5m])))",
        by=("job",),
        window_seconds=300,
        title="database commit p99 latency",
    ),
    "db_locked_errors": Signal(
        "count",
        "above",
        "Store operations that failed because the database stayed locked past the busy timeout "
        '("database is locked"), per job, last 5 minutes.',
        record="job:atlas_db_locked_errors:increase5m",
        expr="sum by (job) (increase(atlas_db_locked_errors_total[5m]))",
        by=("job",),
        window_seconds=300,
        op=">=",
        title="database locked errors",
    ),
    # Host ----------------------------------------------------------------------------------------
    "cpu_usage": Signal(
        "percent",
        "above",
        "CPU busy, all cores, last 5 minutes.",
        100,
        record="instance:node_cpu_busy:ratio_rate5m",
        expr='100 * (1 - sum by (instance) (rate(node_cpu_seconds_total{job="node",mode="idle"}[5m]))\n'
        '  / sum by (instance) (rate(node_cpu_seconds_total{job="node"}[5m])))',
        by=("instance",),
        window_seconds=300,
        title="CPU usage",
    ),
    "memory_usage": Signal(
        "percent",
        "above",
        "Memory in use (MemAvailable based).",
        100,
        record="instance:node_memory_used:ratio",
        expr='100 * (1 - node_memory_MemAvailable_bytes{job="node"}\n'
        '  / node_memory_MemTotal_bytes{job="node"})',
        by=("instance", "job"),
        title="memory usage",
    ),
    "atlas_memory": Signal(
        "percent",
        "above",
        "Atlas processes' RSS as a share of ATLAS_MEMORY_BUDGET_BYTES (no alert when the budget is 0).",
        1000,
        record="instance:atlas_process_resident_memory:ratio_budget",
        expr="100 * sum by (instance) (atlas_process_resident_memory_bytes)\n"
        "  / max by (instance) (atlas_memory_budget_bytes > 0)",
        by=("instance",),
        title="Atlas memory against its budget",
    ),
    "disk_usage": Signal(
        "percent",
        "above",
        "Used space on the data directory's filesystem.",
        100,
        record="instance:atlas_data_dir_used:ratio",
        expr="100 * (1 - max by (instance) (atlas_data_dir_avail_bytes)\n"
        "  / max by (instance) (atlas_data_dir_size_bytes))",
        by=("instance",),
        title="data disk usage",
    ),
    "disk_free": Signal(
        "bytes",
        "below",
        "Free bytes on the data directory's filesystem.",
        record="instance:atlas_data_dir_avail_bytes:max",
        expr="max by (instance) (atlas_data_dir_avail_bytes)",
        by=("instance",),
        title="data disk free space",
    ),
    "disk_fill_hours": Signal(
        "hours",
        "below",
        "Hours until the data directory's filesystem is full at the last hour's rate (only while it fills).",
        1e6,
        record="instance:atlas_data_dir_fill:hours_deriv1h",
        expr="max by (instance) (\n"
        "  atlas_data_dir_avail_bytes / -deriv(atlas_data_dir_avail_bytes[1h]) / 3600\n"
        "  and deriv(atlas_data_dir_avail_bytes[1h]) < 0\n)",
        by=("instance",),
        window_seconds=3600,
        title="data disk full in",
    ),
    "backup_age": Signal(
        "seconds",
        "above",
        "Time since the last successful backup (never: since 1970).",
        record="instance:atlas_backup_age_seconds:time_minus_max",
        expr="time() - max by (instance) (atlas_backup_last_success_timestamp_seconds)",
        by=("instance",),
        title="last backup age",
    ),
}


def camel(name: str) -> str:
    """`disk_usage` -> `DiskUsage`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def alert_name(name: str) -> str:
    """The Prometheus alert name of alerting.yaml's `name`: `disk_usage` -> `AtlasDiskUsage`."""
    return "Atlas" + camel(name)
