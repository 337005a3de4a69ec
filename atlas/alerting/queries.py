"""The query tree of every built-in signal (atlas.alerting.query), next to its PromQL text.

`QUERIES[name]` renders to `SIGNALS[name].expr` (a unit test compares them for every signal), so
the monitoring agent evaluates exactly what Prometheus records. A new signal needs both.
"""

from __future__ import annotations

from atlas.alerting.query import Agg, Bin, Expr, Neg, Num, Paren, Quantile, Range, Sel, Time

INSTANCE, JOB = ("instance",), ("job",)


def _sel(name: str, **labels: str) -> Sel:
    """Matchers from keyword arguments; a value starting with `~` is a regex (`=~`)."""
    return Sel(name, tuple((k, "=~", v[1:]) if v.startswith("~") else (k, "=", v) for k, v in labels.items()))


def _agg(op: str, by: tuple[str, ...], expr: Expr) -> Agg:
    return Agg(op, expr, by=by)


def _rate(sel: Sel, window: float, fn: str = "rate") -> Range:
    return Range(fn, sel, window)


def _ratio(num: Sel, den: Sel, by: tuple[str, ...], window: float) -> Expr:
    return Bin(
        "/",
        Bin("*", Num(100), _agg("sum", by, _rate(num, window))),
        _agg("sum", by, _rate(den, window)),
    )


def _age(metric: str) -> Expr:
    return Bin("-", Time(), _agg("max", INSTANCE, Sel(metric)))


def _used(avail: Expr, size: Expr) -> Expr:
    return Bin("*", Num(100), Paren(Bin("-", Num(1), Bin("/", avail, size))))


_PROCESSED = "atlas_engine_items_processed_total"
_AVAIL = "atlas_data_dir_avail_bytes"
_DERIV = Range("deriv", Sel(_AVAIL), 3600)

QUERIES: dict[str, Expr] = {
    "queue_backlog": _agg("sum", INSTANCE, _sel("atlas_items", state="queued")),
    "oldest_queued_age": _agg("max", INSTANCE, Sel("atlas_queue_oldest_item_age_seconds")),
    "engine_heartbeat_age": _age("atlas_newest_heartbeat_timestamp_seconds"),
    "engine_worker_restarts": _agg(
        "sum", JOB, _rate(Sel("atlas_engine_worker_restarts_total"), 900, "increase")
    ),
    "dead_letters": _agg("sum", INSTANCE, Sel("atlas_dlq_items")),
    "dead_letter_rate": Bin(
        "*", Num(3600), _agg("sum", JOB, _rate(Sel("atlas_engine_dead_lettered_total"), 900))
    ),
    "processing_success_rate": _ratio(
        _sel(_PROCESSED, outcome="~done|duplicate"),
        _sel(_PROCESSED, outcome="~done|duplicate|dead"),
        JOB,
        900,
    ),
    "circuit_open_hosts": _agg("count", JOB, Bin("==", Sel("atlas_host_breaker_state"), Num(2))),
    "feeds_failing": _agg("sum", INSTANCE, _sel("atlas_feeds", status="failing")),
    "maintenance_age": _age("atlas_maintenance_since_timestamp_seconds"),
    "api_error_rate": _ratio(
        _sel("http_requests_total", job="atlas-api", status="5xx"),
        _sel("http_requests_total", job="atlas-api"),
        JOB,
        300,
    ),
    "api_latency_p99": Quantile(
        0.99,
        _agg("sum", ("job", "le"), _rate(_sel("http_request_duration_seconds_bucket", job="atlas-api"), 300)),
    ),
    "target_down": _agg("count", JOB, Bin("==", _sel("up", job="~node|atlas-.+"), Num(0))),
    "notification_failures": _agg(
        "sum",
        ("channel",),
        _rate(_sel("atlas_router_deliveries_total", outcome="~failed|dead"), 900, "increase"),
    ),
    "db_latency_p99": Quantile(
        0.99, _agg("sum", ("job", "le"), _rate(Sel("atlas_engine_commit_duration_seconds_bucket"), 300))
    ),
    "db_locked_errors": _agg("sum", JOB, _rate(Sel("atlas_db_locked_errors_total"), 300, "increase")),
    "cpu_usage": Bin(
        "*",
        Num(100),
        Paren(
            Bin(
                "-",
                Num(1),
                Bin(
                    "/",
                    _agg(
                        "sum", INSTANCE, _rate(_sel("node_cpu_seconds_total", job="node", mode="idle"), 300)
                    ),
                    _agg("sum", INSTANCE, _rate(_sel("node_cpu_seconds_total", job="node"), 300)),
                ),
            )
        ),
    ),
    "memory_usage": _used(
        _sel("node_memory_MemAvailable_bytes", job="node"), _sel("node_memory_MemTotal_bytes", job="node")
    ),
    "atlas_memory": Bin(
        "/",
        Bin("*", Num(100), _agg("sum", INSTANCE, Sel("atlas_process_resident_memory_bytes"))),
        _agg("max", INSTANCE, Bin(">", Sel("atlas_memory_budget_bytes"), Num(0))),
    ),
    "disk_usage": _used(
        _agg("max", INSTANCE, Sel(_AVAIL)), _agg("max", INSTANCE, Sel("atlas_data_dir_size_bytes"))
    ),
    "disk_free": _agg("max", INSTANCE, Sel(_AVAIL)),
    # avail / -deriv / 3600, only where deriv < 0: `and` binds loosest, `<` looser than `/`.
    "disk_fill_hours": _agg(
        "max",
        INSTANCE,
        Bin(
            "and",
            Bin("/", Bin("/", Sel(_AVAIL), Neg(_DERIV)), Num(3600)),
            Bin("<", _DERIV, Num(0)),
        ),
    ),
    "backup_age": _age("atlas_backup_last_success_timestamp_seconds"),
}
