"""The four Atlas dashboards: what each panel asks Prometheus and why.

Jobs are config/prometheus.yml's: `node` (the Atlas exporter), `atlas-api`, `atlas-core`,
`atlas-router`. Every query selects `job=~"$job",instance=~"$instance"` (except `ALERTS` and the SLO
series, whose labels are the rules'), and rates use `$__rate_interval` so they hold at any scrape
interval. The alerts dashboard is atlas.dashboards.alertsboard.
"""

from __future__ import annotations

from pathlib import Path

from atlas.dashboards.alertsboard import alerts
from atlas.dashboards.common import ANNOTATIONS, RI, rate
from atlas.dashboards.model import SEL, Dashboard, Panel, Query

# Panels whose queries can legitimately return nothing, with why; the live test causes each
# condition before it asks (tests/integration/test_dashboards_live.py).
MAY_BE_EMPTY: dict[tuple[str, str], str] = {
    ("atlas-overview", "Dead-letter queue by fingerprint"): "no item has been dead-lettered",
    ("atlas-overview", "Open circuit breakers by host"): "every upstream host is healthy",
    ("atlas-overview", "Rate-limit rejections"): "no key exceeded its API rate limit and no host its "
    "politeness rate",
    ("atlas-api", "Load shedding (429 / 503)"): "no write was refused (backpressure, rate limit, disk, "
    "maintenance)",
    ("atlas-alerts", "Firing alerts by severity"): "no alert is firing",
    (
        "atlas-alerts",
        "AtlasEngineWorkerRestarts: engine_worker_restarts",
    ): "no worker process has been restarted",
    (
        "atlas-alerts",
        "AtlasNotificationFailures: notification_failures",
    ): "no notification delivery has failed",
    ("atlas-alerts", "AtlasTargetDown: target_down"): "every scrape target is up (count of up == 0)",
    ("atlas-alerts", "Notifications sent / failed by channel"): "the alert router has delivered nothing "
    "(sent) and no delivery has failed (failed / dead)",
}


def _quantiles(metric: str, by: str = "") -> tuple[Query, ...]:
    labels = f"le{', ' + by if by else ''}"
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({labels}) ({rate(metric + '_bucket')}))",
            f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
            exemplar=True,
        )
        for q in (0.5, 0.95, 0.99)
    )


def overview() -> Dashboard:
    processed = "atlas_engine_items_processed_total"
    succeeded = rate(processed, ',outcome=~"done|duplicate"')
    final = rate(processed, ',outcome=~"done|duplicate|dead"')
    limited = rate("atlas_api_shed_total", ',status="429"')
    return Dashboard(
        "atlas-overview",
        "Atlas overview",
        "Ingest, processing, backlog, dead letters and per-host reliability of the Atlas engine.",
        [
            Panel(
                "Ingest rate by kind",
                "Items committed by the API per second, by kind (atlas_api_items_accepted_total). "
                "Items carry no source label in metrics (unbounded), so sources are not split here.",
                "ops",
                (Query(f"sum by (kind) ({rate('atlas_api_items_accepted_total')})", "{{kind}}"),),
                stack=True,
                width=8,
            ),
            Panel(
                "Processed by outcome",
                "Attempts finished by the engine per second, by outcome (done, duplicate, retry, "
                "dead, died, timeout).",
                "ops",
                (Query(f"sum by (outcome) ({rate(processed)})", "{{outcome}}"),),
                stack=True,
                width=8,
            ),
            Panel(
                "Success ratio",
                "Share of final outcomes that succeeded: (done + duplicate) / (done + duplicate + "
                "dead). Retries are not final and not counted.",
                "percentunit",
                (
                    Query(
                        f"sum({succeeded}) / sum({final})",
                        "success",
                    ),
                ),
                width=8,
                min=0,
                max=1,
            ),
            Panel(
                "Backlog by state",
                "Items waiting (queued) or being worked on (leased), by kind, read from the store by "
                "the exporter.",
                "short",
                (
                    Query(
                        f'sum by (state, kind) (atlas_items{{{SEL},state=~"queued|leased"}})',
                        "{{state}} {{kind}}",
                    ),
                ),
                stack=True,
                width=8,
            ),
            Panel(
                "Oldest queued item age",
                "How long the oldest queued item has waited (0 when nothing is queued): the "
                "engine is not keeping up when this grows.",
                "s",
                (Query(f"max by (instance) (atlas_queue_oldest_item_age_seconds{{{SEL}}})", "{{instance}}"),),
                width=8,
            ),
            Panel(
                "Dead-letter queue by fingerprint",
                "Dead-lettered items by error fingerprint (stage:error_class); the largest groups "
                'first, the rest as "other". Replay with `atlas-ops dlq replay`.',
                "short",
                (Query(f"sum by (fingerprint) (atlas_dlq_items{{{SEL}}})", "{{fingerprint}}"),),
                stack=True,
                width=8,
            ),
            Panel(
                "Accept-to-done latency",
                "Time from an item's acceptance to its final state, p50/p95/p99 over all kinds "
                "(includes retries and backoff).",
                "s",
                _quantiles("atlas_engine_accept_to_done_seconds"),
                width=12,
            ),
            Panel(
                "Accept-to-done latency heatmap",
                "Items finished per latency bucket (atlas_engine_accept_to_done_seconds).",
                "s",
                (
                    Query(
                        f"sum by (le) (increase(atlas_engine_accept_to_done_seconds_bucket{{{SEL}}}[{RI}]))",
                        "{{le}}",
                        heatmap=True,
                    ),
                ),
                kind="heatmap",
                width=12,
            ),
            Panel(
                "Stage durations (p95)",
                "95th percentile time of each pipeline stage on one item.",
                "s",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (le, stage) "
                        f"({rate('atlas_engine_stage_duration_seconds_bucket')}))",
                        "{{stage}}",
                    ),
                ),
                width=12,
            ),
            Panel(
                "Open circuit breakers by host",
                "Upstream hosts whose circuit breaker is open (atlas_host_breaker_state == 2): "
                "their items wait without spending attempts.",
                "short",
                (Query(f"count by (host) (atlas_host_breaker_state{{{SEL}}} == 2)", "{{host}}"),),
                stack=True,
                width=12,
            ),
            Panel(
                "Rate-limit rejections",
                "API requests refused by the per-key rate limit (429), and fetches held back by a "
                "host's politeness bucket, per second.",
                "reqps",
                (
                    Query(f"sum by (status) ({limited})", "API {{status}}"),
                    Query(
                        f"sum by (host, action) ({rate('atlas_host_rate_limited_total')})",
                        "{{host}} {{action}}",
                    ),
                ),
                width=12,
            ),
            Panel(
                "Concurrency limit vs in flight",
                "The adaptive (AIMD) fetch concurrency limit over all hosts against the fetches "
                "under way and the items the engine holds leases on.",
                "short",
                (
                    Query(f"max(atlas_fetch_concurrency_limit{{{SEL}}})", "limit"),
                    Query(f"sum(atlas_host_in_flight{{{SEL}}})", "fetches in flight"),
                    Query(f"sum(atlas_engine_in_flight{{{SEL}}})", "items leased"),
                ),
                width=12,
            ),
        ],
        ANNOTATIONS,
    )


def api() -> Dashboard:
    requests = "http_requests_total"
    errors = rate(requests, ',status="5xx"')
    return Dashboard(
        "atlas-api",
        "Atlas API",
        "The HTTP API: traffic, errors, latency (with trace exemplars), concurrency and shedding.",
        [
            Panel(
                "Requests by handler and status",
                "Requests per second by route template and status class.",
                "reqps",
                (Query(f"sum by (handler, status) ({rate(requests)})", "{{handler}} {{status}}"),),
                width=12,
            ),
            Panel(
                "Error ratio (5xx)",
                "Share of requests answered 5xx; 0 when there were none (not empty).",
                "percentunit",
                (
                    Query(
                        f"(sum({errors}) or vector(0)) / sum({rate(requests)})",
                        "5xx ratio",
                    ),
                ),
                width=12,
                min=0,
            ),
            Panel(
                "Latency percentiles",
                "Request duration p50/p95/p99 over all handlers. Exemplars are on: a point links to "
                "the trace of a request in that bucket (trace_id).",
                "s",
                _quantiles("http_request_duration_seconds"),
                width=12,
            ),
            Panel(
                "Latency p99 by handler",
                "99th percentile request duration of each route template.",
                "s",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le, handler) "
                        f"({rate('http_request_duration_seconds_bucket')}))",
                        "{{handler}}",
                        exemplar=True,
                    ),
                ),
                width=12,
            ),
            Panel(
                "Requests in flight",
                "Requests being served right now, by route template.",
                "short",
                (Query(f"sum by (handler) (http_requests_inprogress{{{SEL}}})", "{{handler}}"),),
                width=8,
            ),
            Panel(
                "Load shedding (429 / 503)",
                "Writes refused to protect the system, per second: 429 (backpressure, per-key rate "
                "limit), 503 (disk low-water mark, maintenance, commit queue).",
                "reqps",
                (Query(f"sum by (status) ({rate('atlas_api_shed_total')})", "{{status}}"),),
                width=8,
            ),
            Panel(
                "Group commit size (p50)",
                "Median items per group-commit transaction: higher means concurrent requests share an fsync.",
                "short",
                (
                    Query(
                        "histogram_quantile(0.5, sum by (le) "
                        f"({rate('atlas_api_commit_batch_rows_bucket')}))",
                        "p50",
                    ),
                ),
                width=8,
            ),
        ],
        ANNOTATIONS,
    )


def system() -> Dashboard:
    cpus = f'count by (instance) (node_cpu_seconds_total{{{SEL},mode="idle"}})'
    fs = f'{SEL},fstype!~"tmpfs|ramfs"'
    busy = rate("node_cpu_seconds_total", ',mode!="idle"')
    return Dashboard(
        "atlas-system",
        "Atlas system",
        "The host under Atlas, from the Atlas exporter under node_exporter's names (job=node), "
        "and each Atlas service's own resources.",
        [
            Panel(
                "CPU busy by mode",
                "CPU time spent per mode (idle excluded) as a share of all cores.",
                "percentunit",
                (
                    Query(
                        f"sum by (instance, mode) ({busy}) / on (instance) group_left {cpus}",
                        "{{mode}}",
                    ),
                ),
                stack=True,
                width=12,
                min=0,
            ),
            Panel(
                "Load per core",
                "1, 5 and 15 minute load averages divided by the number of cores: above 1 means "
                "runnable work waits for a CPU.",
                "short",
                tuple(
                    Query(f"node_load{m}{{{SEL}}} / on (instance) group_left {cpus}", f"load{m}")
                    for m in (1, 5, 15)
                ),
                width=12,
            ),
            Panel(
                "Memory",
                "Memory in use (MemTotal - MemAvailable) and available.",
                "bytes",
                (
                    Query(
                        f"node_memory_MemTotal_bytes{{{SEL}}} - node_memory_MemAvailable_bytes{{{SEL}}}",
                        "used",
                    ),
                    Query(f"node_memory_MemAvailable_bytes{{{SEL}}}", "available"),
                ),
                stack=True,
                width=8,
            ),
            Panel(
                "Swap used",
                "Swap in use (SwapTotal - SwapFree); 0 on hosts without swap.",
                "bytes",
                (
                    Query(
                        f"node_memory_SwapTotal_bytes{{{SEL}}} - node_memory_SwapFree_bytes{{{SEL}}}",
                        "swap used",
                    ),
                ),
                width=8,
            ),
            Panel(
                "File descriptors",
                "Allocated file handles as a share of the kernel's maximum (node_filefd).",
                "percentunit",
                (Query(f"node_filefd_allocated{{{SEL}}} / node_filefd_maximum{{{SEL}}}", "{{instance}}"),),
                width=8,
            ),
            Panel(
                "Filesystem use",
                "Used share of each filesystem (tmpfs excluded), as non-root users see it (avail).",
                "percentunit",
                (
                    Query(
                        f"1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}",
                        "{{mountpoint}}",
                    ),
                ),
                width=12,
                min=0,
                max=1,
            ),
            Panel(
                "Filesystem free in 24 h (predicted)",
                "Free bytes each filesystem will have in 24 hours if the last 6 hours' trend "
                "continues (predict_linear): below 0 means it fills up within a day.",
                "bytes",
                (Query(f"predict_linear(node_filesystem_avail_bytes{{{fs}}}[6h], 86400)", "{{mountpoint}}"),),
                width=12,
            ),
            Panel(
                "Disk I/O",
                "Bytes read and written per second by block device.",
                "Bps",
                (
                    Query(f"sum by (device) ({rate('node_disk_read_bytes_total')})", "{{device}} read"),
                    Query(f"sum by (device) ({rate('node_disk_written_bytes_total')})", "{{device}} written"),
                ),
                width=12,
            ),
            Panel(
                "Network",
                "Bytes received and sent per second by interface.",
                "Bps",
                (
                    Query(f"sum by (device) ({rate('node_network_receive_bytes_total')})", "{{device}} in"),
                    Query(f"sum by (device) ({rate('node_network_transmit_bytes_total')})", "{{device}} out"),
                ),
                width=12,
            ),
            Panel(
                "Atlas services: resident memory",
                "RSS of each Atlas service's main process (found by its pid file).",
                "bytes",
                (Query(f"sum by (service) (atlas_process_resident_memory_bytes{{{SEL}}})", "{{service}}"),),
                width=8,
            ),
            Panel(
                "Atlas services: CPU",
                "CPU used by each Atlas service's main process (1 = one core).",
                "percentunit",
                (Query(f"sum by (service) ({rate('atlas_process_cpu_seconds_total')})", "{{service}}"),),
                width=8,
            ),
            Panel(
                "Atlas services: open file descriptors",
                "Open file descriptors of each Atlas service.",
                "short",
                (Query(f"sum by (service) (atlas_process_open_fds{{{SEL}}})", "{{service}}"),),
                width=8,
            ),
        ],
        ANNOTATIONS,
    )


def all_dashboards(config_dir: Path) -> list[Dashboard]:
    return [overview(), api(), system(), alerts(config_dir)]
