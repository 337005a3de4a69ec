"""One definition, two enforcers: every query tree the agent evaluates renders to the PromQL text
the compiler writes into atlas.rules.yml (whitespace aside)."""

from __future__ import annotations

from atlas.alerting.config import read_alerting
from atlas.alerting.queries import QUERIES
from atlas.alerting.query import render, same_text
from atlas.alerting.signals import SIGNALS
from atlas.alerting.slo import BURN_ALERTS, WINDOWS, alert_expr, alert_query, recording_rules, sli_query
from tests.conftest import ROOT


def test_every_signal_query_renders_to_its_recording_rule() -> None:
    assert set(QUERIES) == set(SIGNALS)
    wrong = {n: render(QUERIES[n]) for n, s in SIGNALS.items() if not same_text(render(QUERIES[n]), s.expr)}
    assert wrong == {}


def test_every_slo_query_renders_to_its_rules() -> None:
    slos = read_alerting(ROOT / "config" / "alerting.yaml").slos
    assert {s.name for s in slos} == {"ingest_availability", "processing_success", "accept_to_done_latency"}
    for slo in slos:
        records = {r["record"]: r["expr"] for r in recording_rules(slo)}
        for window in WINDOWS:
            assert same_text(render(sli_query(slo, window)), records[f"slo:sli_error:ratio_rate{window}"])
        for _severity, _sloth, pairs in BURN_ALERTS:
            assert same_text(render(alert_query(slo, pairs)), alert_expr(slo, pairs))
