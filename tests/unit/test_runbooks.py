"""docs/runbooks.md has an entry per compiled alert, each with its four parts, and every
runbook_url in the rules resolves to an anchor in it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from atlas.alerting.rules import RUNBOOKS

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("**Meaning**", "**Confirm**", "**Act**", "**Fixed when**")


def entries() -> dict[str, str]:
    text = (ROOT / RUNBOOKS).read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    return {s.splitlines()[0].strip(): s for s in sections}


def test_every_alert_has_an_entry_with_all_four_parts_and_its_runbook_url_resolves() -> None:
    rules = yaml.safe_load((ROOT / "alertrules" / "atlas.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    records = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    docs = entries()
    anchors = {name.lower() for name in docs}
    for alert in alerts:
        name = alert["alert"]
        assert name in docs, f"docs/runbooks.md has no entry for {name}"
        body = docs[name]
        for part in PARTS:
            assert part in body, f"{name}: no {part}"
        url = alert["annotations"]["runbook_url"]
        if url.startswith(RUNBOOKS):
            assert url.split("#", 1)[1] in anchors, url
        # The confirmation names the series the alert compares (its recording rule), when it has one.
        compared = alert["expr"].split()[0]
        if compared in records:
            assert compared in body, f"{name}: the runbook does not show how to query {compared}"
    assert set(docs) == {a["alert"] for a in alerts}, "runbook entries for alerts that do not exist"
