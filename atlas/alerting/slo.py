"""Service level objectives: alerting.yaml's `slos:` section and the rules it compiles to.

The rules have the shape Sloth generates (sloth.dev), so Sloth's dashboards and habits carry over:
`slo:sli_error:ratio_rate<window>` recording rules per window, the objective, budget and burn-rate
series, `slo:period_error_budget_remaining:ratio` for dashboards, and two multi-window
multi-burn-rate alerts (Google SRE workbook, ch. 5):

- page (severity critical): burn > 14.4x over 1h and 5m, or > 6x over 6h and 30m;
- ticket (severity warning): burn > 3x over 1d and 2h, or > 1x over 3d and 6h.

The long window says the budget is really being spent; the short one makes the alert resolve soon
after the burning stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from atlas.alerting.fixtures import le as le_label
from atlas.alerting.query import Agg, Bin, Expr, Matcher, Num, Paren, Range, Recorded, Sel
from atlas.config.yamlcheck import YamlChecker
from atlas.observability.metrics import LATENCY_BUCKETS

# (severity, sloth severity, ((burn factor, long window, short window), ...))
BURN_ALERTS = (
    ("critical", "page", ((14.4, "1h", "5m"), (6.0, "6h", "30m"))),
    ("warning", "ticket", ((3.0, "1d", "2h"), (1.0, "3d", "6h"))),
)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
_INGEST = 'sum(rate(http_requests_total{job="atlas-api",handler=~"/v1/items(/batch)?",method="POST"'
_PROCESSED = "atlas_engine_items_processed_total"


@dataclass(frozen=True)
class SLI:
    """Error and total event rates as PromQL over `[{window}]`."""

    doc: str
    errors: str
    total: str
    needs_bound: bool = False


# "$window" and "$le" are replaced by each window and the latency bound's bucket label.
SLIS: dict[str, SLI] = {
    "ingest_availability": SLI(
        "Ingest requests (POST /v1/items, /v1/items/batch) answered without a 5xx.",
        _INGEST + ',status="5xx"}[$window]))',
        _INGEST + "}[$window]))",
    ),
    "processing_success": SLI(
        "Items finishing done or duplicate rather than dead.",
        f'sum(rate({_PROCESSED}{{outcome="dead"}}[$window]))',
        f'sum(rate({_PROCESSED}{{outcome=~"done|duplicate|dead"}}[$window]))',
    ),
    "accept_to_done_latency": SLI(
        "Items reaching their final state within the SLO's threshold of being accepted.",
        "(sum(rate(atlas_engine_accept_to_done_seconds_count[$window]))"
        ' - sum(rate(atlas_engine_accept_to_done_seconds_bucket{le="$le"}[$window])))',
        "sum(rate(atlas_engine_accept_to_done_seconds_count[$window]))",
        needs_bound=True,
    ),
}
_KEYS = ("objective", "period", "threshold", "enabled", "channels", "runbook_url", "description")


@dataclass(frozen=True)
class SLO:
    name: str
    objective: float  # ratio of good events, e.g. 0.999
    period_seconds: float
    line: int
    bound_seconds: float | None = None
    enabled: bool = True
    channels: tuple[str, ...] = ()
    runbook_url: str | None = None
    description: str | None = None

    @property
    def budget(self) -> float:
        return 1 - self.objective

    @property
    def sli(self) -> SLI:
        return SLIS[self.name]


def load_slos(check: YamlChecker, node: yaml.Node) -> list[SLO]:
    """The `slos:` mapping's SLOs; findings go to `check` (file, line, key)."""
    body = check.mapping(node, "slos", SLIS)
    out: list[SLO] = []
    for name, slo_node in (body or {}).items():
        where = f"slos.{name}"
        keys = check.mapping(slo_node, where, _KEYS)
        if keys is None:
            continue
        if "objective" not in keys:
            check.error(slo_node, f"{where}.objective", "missing: the percent of good events, e.g. 99.9")
            continue
        objective = check.number(keys["objective"], f"{where}.objective", 50, 99.9999)
        period = check.duration(keys["period"], f"{where}.period") if "period" in keys else 30 * 86_400.0
        bound = _bound(check, keys, where, SLIS[name])
        enabled = check.boolean(keys["enabled"], f"{where}.enabled") if "enabled" in keys else True
        extra: dict[str, Any] = {}
        if "channels" in keys:
            channels = check.text_list(
                keys["channels"], f"{where}.channels", "email|webhook|slack", "channels"
            )
            extra["channels"] = tuple(channels or ())
        for key in ("runbook_url", "description"):
            if key in keys:
                extra[key] = check.text(keys[key], f"{where}.{key}")
        if objective is None or not period or enabled is None or (SLIS[name].needs_bound and bound is None):
            continue
        out.append(SLO(name, objective / 100, period, check.line(slo_node), bound, enabled, **extra))
    return out


def _bound(check: YamlChecker, keys: dict[str, yaml.Node], where: str, sli: SLI) -> float | None:
    if not sli.needs_bound:
        if "threshold" in keys:
            check.error(keys["threshold"], f"{where}.threshold", "only latency SLOs take a threshold")
        return None
    if "threshold" not in keys:
        check.error(keys.get("objective"), f"{where}.threshold", "missing: the latency bound, e.g. 60s")
        return None
    bound = check.duration(keys["threshold"], f"{where}.threshold")
    if bound is not None and bound not in LATENCY_BUCKETS:
        # The SLI counts events under the bound from a histogram bucket; a bound between buckets
        # would need interpolation, which an SLI must not do.
        shown = ", ".join(f"{b:g}s" for b in LATENCY_BUCKETS)
        check.error(keys["threshold"], f"{where}.threshold", f"must be a histogram bucket bound: {shown}")
        return None
    return bound


def _labels(slo: SLO) -> dict[str, str]:
    return {"sloth_id": f"atlas-{slo.name}", "sloth_service": "atlas", "sloth_slo": slo.name}


def _selector(slo: SLO) -> str:
    return f'{{sloth_id="atlas-{slo.name}", sloth_service="atlas", sloth_slo="{slo.name}"}}'


def days(seconds: float) -> str:
    return f"{seconds / 86_400:g}d" if seconds % 86_400 == 0 else f"{seconds:g}s"


def recording_rules(slo: SLO) -> list[dict[str, Any]]:
    """Sloth's recording rules for one SLO."""
    labels = _labels(slo)
    le = le_label(slo.bound_seconds) if slo.bound_seconds is not None else ""
    rules: list[dict[str, Any]] = []
    for window in WINDOWS:
        errors = slo.sli.errors.replace("$window", window).replace("$le", le)
        total = slo.sli.total.replace("$window", window).replace("$le", le)
        rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{window}",
                "expr": f"({errors})\n/\n({total})\n",
                "labels": {**labels, "sloth_window": window},
            }
        )
    period = days(slo.period_seconds)
    sel = _selector(slo)
    rules += [
        {
            "record": f"slo:sli_error:ratio_rate{period}",
            "expr": f"sum_over_time(slo:sli_error:ratio_rate5m{sel}[{period}])\n"
            f"/ ignoring (sloth_window)\ncount_over_time(slo:sli_error:ratio_rate5m{sel}[{period}])\n",
            "labels": {**labels, "sloth_window": period},
        },
        {"record": "slo:objective:ratio", "expr": f"vector({slo.objective:.10g})", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector(1-{slo.objective:.10g})", "labels": labels},
        {
            "record": "slo:time_period:days",
            "expr": f"vector({slo.period_seconds / 86_400:g})",
            "labels": labels,
        },
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate5m{sel}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{sel}\n",
            "labels": labels,
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate{period}{sel}\n"
            f"/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{sel}\n",
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{sel}",
            "labels": labels,
        },
        {
            "record": "sloth_slo_info",
            "expr": "vector(1)",
            "labels": {
                **labels,
                "sloth_mode": "atlas-compiled",
                "sloth_objective": f"{slo.objective * 100:g}",
            },
        },
    ]
    return rules


def alert_expr(slo: SLO, pairs: tuple[tuple[float, str, str], ...]) -> str:
    """Sloth's multi-window multi-burn-rate condition for one severity."""
    sel = _selector(slo)
    parts = []
    for factor, long_w, short_w in pairs:
        limit = f"({factor:g} * {slo.budget:.10g})"
        parts.append(
            f"(\n    max(slo:sli_error:ratio_rate{short_w}{sel} > {limit}) without (sloth_window)\n"
            f"    and\n    max(slo:sli_error:ratio_rate{long_w}{sel} > {limit}) without (sloth_window)\n)"
        )
    return "\n or\n".join(parts) + "\n"


# The same SLIs as query trees (atlas.alerting.query) for the monitoring agent; a unit test checks
# they render to the PromQL above, window by window.
_INGEST_SEL: tuple[Matcher, ...] = (
    ("job", "=", "atlas-api"),
    ("handler", "=~", "/v1/items(/batch)?"),
    ("method", "=", "POST"),
)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400}


def window_seconds(window: str) -> float:
    return float(window[:-1]) * _UNIT_SECONDS[window[-1]]


def _sum_rate(sel: Sel, seconds: float) -> Expr:
    return Agg("sum", Range("rate", sel, seconds))


def sli_query(slo: SLO, window: str) -> Expr:
    """`slo:sli_error:ratio_rate<window>`'s expression as a query tree."""
    w = window_seconds(window)
    if slo.name == "ingest_availability":
        errors = _sum_rate(Sel("http_requests_total", (*_INGEST_SEL, ("status", "=", "5xx"))), w)
        total = _sum_rate(Sel("http_requests_total", _INGEST_SEL), w)
    elif slo.name == "processing_success":
        errors = _sum_rate(Sel(_PROCESSED, (("outcome", "=", "dead"),)), w)
        total = _sum_rate(Sel(_PROCESSED, (("outcome", "=~", "done|duplicate|dead"),)), w)
    else:
        le = le_label(slo.bound_seconds) if slo.bound_seconds is not None else ""
        count = _sum_rate(Sel("atlas_engine_accept_to_done_seconds_count"), w)
        under = _sum_rate(Sel("atlas_engine_accept_to_done_seconds_bucket", (("le", "=", le),)), w)
        errors, total = Paren(Bin("-", count, under)), count
    return Bin("/", Paren(errors), Paren(total))


def alert_query(slo: SLO, pairs: tuple[tuple[float, str, str], ...]) -> Expr:
    """`alert_expr(slo, pairs)` as a query tree: the recorded ratios are read back with their labels."""
    selector = tuple((k, "=", v) for k, v in _labels(slo).items())

    def over(window: str, factor: float) -> Expr:
        labels = tuple({**_labels(slo), "sloth_window": window}.items())
        ratio = Recorded(f"slo:sli_error:ratio_rate{window}", selector, labels, sli_query(slo, window))
        limit = Paren(Bin("*", Num(factor), Num(slo.budget)))
        return Agg("max", Bin(">", ratio, limit), without=("sloth_window",))

    out: Expr | None = None
    for factor, long_w, short_w in pairs:
        both = Paren(Bin("and", over(short_w, factor), over(long_w, factor)))
        out = both if out is None else Bin("or", out, both)
    assert out is not None
    return out


def alert_name(slo: SLO) -> str:
    from atlas.alerting.signals import camel

    return f"Atlas{camel(slo.name)}BudgetBurn"
