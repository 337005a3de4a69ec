"""The Atlas alerts dashboard: firing alerts, scrape targets, SLO budgets and burn rates, the alert
router's deliveries and outbox, then one panel per compiled alert (atlas.dashboards.alertpanels)."""

from __future__ import annotations

from pathlib import Path

from atlas.alerting.slo import BURN_ALERTS
from atlas.dashboards.alertpanels import (
    ALERTS_TITLE,
    ALERTS_UID,
    FIRING_PANEL_ID,
    SLO_BUDGET_PANEL_ID,
    SLO_BURN_PANEL_ID,
    alert_definitions,
    alert_panels,
)
from atlas.dashboards.common import ANNOTATIONS, rate
from atlas.dashboards.model import SEL, Dashboard, Panel, Query, Threshold


def _slo_panels() -> list[Panel]:
    # The SLO series are the compiled SLO recording rules' (atlas.alerting.slo, Sloth's shape): they
    # aggregate over every Atlas process and carry sloth_* labels, not job or instance.
    page = [
        (f, long_w) for severity, _, pairs in BURN_ALERTS if severity == "critical" for f, long_w, _ in pairs
    ]
    return [
        Panel(
            "SLO error budget remaining",
            "Share of each SLO's error budget left over its period "
            "(slo:period_error_budget_remaining:ratio): 1 = untouched, 0 = spent, below 0 = the "
            "objective is missed. The objectives are alerting.yaml's slos:.",
            "percentunit",
            (Query('slo:period_error_budget_remaining:ratio{sloth_service="atlas"}', "{{sloth_slo}}"),),
            width=12,
            max=1,
            panel_id=SLO_BUDGET_PANEL_ID,
        ),
        Panel(
            "SLO burn rate",
            "How fast each SLO spends its error budget, over the last 5 minutes and over its whole period "
            "(1 = the budget lasts exactly the period). The lines are the page alert's burn factors "
            "(over 1h and 6h); the burn-rate alerts link here through their dashboard_url annotation.",
            "short",
            (
                Query('slo:current_burn_rate:ratio{sloth_service="atlas"}', "{{sloth_slo}} 5m"),
                Query('slo:period_burn_rate:ratio{sloth_service="atlas"}', "{{sloth_slo}} period"),
            ),
            thresholds=tuple(
                Threshold(factor, "red" if factor == max(f for f, _ in page) else "orange", f"page {window}")
                for factor, window in sorted(page)
            ),
            width=12,
            min=0,
            panel_id=SLO_BURN_PANEL_ID,
        ),
    ]


def _router_panels() -> list[Panel]:
    sent = rate("atlas_router_deliveries_total", ',outcome="sent"')
    failed = rate("atlas_router_deliveries_total", ',outcome=~"failed|dead"')
    return [
        Panel(
            "Notifications sent / failed by channel",
            "Alert router deliveries per second by channel: sent, and failed (retried later) or dead "
            "(given up after the last attempt).",
            "ops",
            (
                Query(f"sum by (channel) ({sent})", "{{channel}} sent"),
                Query(f"sum by (channel, outcome) ({failed})", "{{channel}} {{outcome}}"),
            ),
            width=8,
        ),
        Panel(
            "Outbox depth",
            "Deliveries waiting in the alert router's outbox, by channel (0 when every notification is out).",
            "short",
            (Query(f"sum by (channel) (atlas_router_outbox_depth{{{SEL}}})", "{{channel}}"),),
            width=8,
        ),
        Panel(
            "Oldest pending delivery",
            "Age of the oldest delivery still pending in the outbox, by channel: a channel that keeps "
            "failing shows a growing line.",
            "s",
            (
                Query(
                    f"max by (channel) (atlas_router_outbox_oldest_pending_seconds{{{SEL}}})", "{{channel}}"
                ),
            ),
            width=8,
        ),
    ]


def alerts(config_dir: Path) -> Dashboard:
    board = Dashboard(
        ALERTS_UID,
        ALERTS_TITLE,
        "What Prometheus alerts on: firing alerts, scrape targets, SLO error budgets and burn rates, the "
        "alert router's deliveries, then one panel per alert of alerting.yaml with its thresholds as lines.",
        [
            Panel(
                "Firing alerts by severity",
                "Alerts firing now (Prometheus's ALERTS series), by severity. Custom alerts of "
                "alerting.yaml link here through their dashboard_url annotation.",
                "short",
                (Query('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}"),),
                stack=True,
                width=12,
                panel_id=FIRING_PANEL_ID,
            ),
            Panel(
                "Scrape targets up",
                "Targets Prometheus scraped successfully, by job (up == 1); a dip is a process down.",
                "short",
                (Query(f"sum by (job) (up{{{SEL}}})", "{{job}}"),),
                width=12,
            ),
            *_slo_panels(),
            *_router_panels(),
        ],
        ANNOTATIONS,
    )
    board.panels += alert_panels(alert_definitions(config_dir))
    return board
