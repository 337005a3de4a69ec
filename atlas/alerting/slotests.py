"""Generated promtool tests for the SLO burn-rate alerts (atlas.alerting.slo).

Error ratios are held at multiples of the error budget: 0.5x stays silent and leaves half the
budget; 4x pages nobody but opens a ticket (3x over 1d and 2h); a 5-minute burst at 20x pages
(14.4x over 1h and 5m); once it stops the page resolves with its short windows while the ticket
stays as long as the burst weighs more than 1x in the 6-hour window (errors over the requests
seen so far: 100 error-minutes against 100 minutes of traffic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atlas.alerting.fixtures import API, CORE, le, sel
from atlas.alerting.slo import SLO, days
from atlas.alerting.slo import alert_name as slo_alert_name

STEP_SECONDS = 60
RATE = 10.0  # events per second


def _series(slo: SLO, phases: list[tuple[int, float]]) -> list[dict[str, str]]:
    """Counters for (minutes, error ratio) phases."""
    counters: list[tuple[str, Callable[[float], float]]]
    if slo.name == "ingest_availability":
        base = {**API, "handler": "/v1/items", "method": "POST"}
        bad, all_ = (
            sel("http_requests_total", base, status="5xx"),
            sel("http_requests_total", base, status="2xx"),
        )
        counters = [(bad, lambda e: RATE * e), (all_, lambda e: RATE * (1 - e))]
    elif slo.name == "processing_success":
        counters = [
            (sel("atlas_engine_items_processed_total", CORE, kind="url", outcome="dead"), lambda e: RATE * e),
            (
                sel("atlas_engine_items_processed_total", CORE, kind="url", outcome="done"),
                lambda e: RATE * (1 - e),
            ),
        ]
    else:
        bound = le(slo.bound_seconds or 0)
        counters = [
            (sel("atlas_engine_accept_to_done_seconds_count", CORE, kind="url"), lambda e: RATE),
            (
                sel("atlas_engine_accept_to_done_seconds_bucket", CORE, kind="url", le=bound),
                lambda e: RATE * (1 - e),
            ),
        ]
    out = []
    for selector, rate_of in counters:
        value, parts = 0.0, []
        for minutes, ratio in phases:
            inc = rate_of(ratio) * STEP_SECONDS
            parts.append(f"{value:.15g}+{inc:.15g}x{minutes - 1}")
            value += inc * minutes
        out.append({"series": selector, "values": " ".join(parts)})
    return out


def _alert(slo: SLO, body: dict[str, Any]) -> dict[str, Any]:
    labels = {
        "sloth_id": f"atlas-{slo.name}",
        "sloth_service": "atlas",
        "sloth_slo": slo.name,
        **body["labels"],
    }
    return {"exp_labels": labels, "exp_annotations": body["annotations"]}


def slo_tests(slo: SLO, alerts: list[dict[str, Any]], rule_file: str) -> dict[str, Any]:
    name = slo_alert_name(slo)
    by_severity = {a["labels"]["severity"]: a for a in alerts}
    page, ticket = _alert(slo, by_severity["critical"]), _alert(slo, by_severity["warning"])
    b = slo.budget
    sel_ = f'{{sloth_id="atlas-{slo.name}"}}'
    tests = [
        {
            "name": f"{name}: 0.5x the budget for 2h: silent, half the budget left",
            "interval": f"{STEP_SECONDS}s",
            "input_series": _series(slo, [(2 * 60, 0.5 * b)]),
            "alert_rule_test": [{"eval_time": "2h", "alertname": name, "exp_alerts": []}],
            "promql_expr_test": [
                {
                    "expr": f"round(slo:period_error_budget_remaining:ratio{sel_}, 0.01)",
                    "eval_time": "2h",
                    "exp_samples": [
                        {
                            "labels": f'{{sloth_id="atlas-{slo.name}",sloth_service="atlas",'
                            f'sloth_slo="{slo.name}",sloth_window="{days(slo.period_seconds)}"}}',
                            "value": 0.5,
                        }
                    ],
                }
            ],
        },
        {
            "name": f"{name}: 4x the budget: a ticket, no page",
            "interval": f"{STEP_SECONDS}s",
            "input_series": _series(slo, [(40, 4 * b)]),
            "alert_rule_test": [{"eval_time": "30m", "alertname": name, "exp_alerts": [ticket]}],
        },
        {
            "name": f"{name}: 20x the budget for 5m: page and ticket; the page resolves, then the ticket",
            "interval": f"{STEP_SECONDS}s",
            "input_series": _series(slo, [(5, 20 * b), (125, 0.0)]),
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": name, "exp_alerts": [page, ticket]},
                {"eval_time": "30m", "alertname": name, "exp_alerts": [ticket]},
                {"eval_time": "2h", "alertname": name, "exp_alerts": []},
            ],
        },
    ]
    return {"rule_files": [rule_file], "evaluation_interval": f"{STEP_SECONDS}s", "tests": tests}
