"""Routing decisions and cooldowns: the pure plan, and the outbox (a real SQLite file) applying
cooldowns per channel and fingerprint inside the accepting transaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atlas.alerting.config import read_alerting
from atlas.alerting.router.payload import PayloadError, parse_notification
from atlas.alerting.router.render import OVERRIDE_DIR, Renderer
from atlas.alerting.router.routing import AlertPolicy, ChannelPolicy, alert_policies, plan
from atlas.store.outbox import Outbox
from atlas.store.sqlite_outbox import _CLAIM, SQLiteOutbox
from tests.conftest import ROOT
from tests.helpers.router import alert, payload

CHANNELS = [
    ChannelPolicy("email", "critical", send_resolved=False),
    ChannelPolicy("webhook", "warning"),
    ChannelPolicy("slack", "warning"),
]


def test_min_severity_send_resolved_and_the_alerts_channels_label() -> None:
    n = parse_notification(
        payload(
            "G",
            [
                alert("w", severity="warning"),
                alert("c", severity="critical"),
                alert("r", severity="critical", status="resolved"),
                alert("s", severity="critical", channels="slack"),
                alert("i", severity="info"),
            ],
        )
    )
    got = {p.channel: sorted(c.fingerprint for c in p.candidates) for p in plan(n, CHANNELS, {})}
    assert got == {"email": ["c"], "webhook": ["c", "r", "w"], "slack": ["c", "r", "s", "w"]}


def test_a_channel_with_nothing_to_send_says_why() -> None:
    n = parse_notification(payload("G", [alert("w", severity="warning")]))
    email = plan(n, CHANNELS, {})[0]
    assert email.candidates == () and "below min_severity critical" in email.skipped_reason


def test_cooldowns_come_from_alerting_yaml_by_alert_name() -> None:
    policies = alert_policies(read_alerting(ROOT / "config" / "alerting.yaml"))
    assert policies["AtlasDiskUsage"] == AlertPolicy(600.0, None)  # cooldown: 10m
    assert policies["AtlasQueueBacklog"].cooldown_seconds == 1800.0  # defaults.cooldown: 30m


def test_the_dedupe_key_ignores_alert_order_and_counts_status_and_starts_at() -> None:
    a, b = alert("f1"), alert("f2")
    key = parse_notification(payload("G", [a, b])).dedupe_key
    assert parse_notification(payload("G", [b, a])).dedupe_key == key
    assert parse_notification(payload("G", [a, {**b, "startsAt": "2026-02-01T00:00:00Z"}])).dedupe_key != key
    assert parse_notification(payload("G", [a, b], status="resolved")).dedupe_key != key
    assert parse_notification(payload("H", [a, b])).dedupe_key != key


def test_a_non_object_alert_names_its_index() -> None:
    with pytest.raises(PayloadError, match=r"^alerts\[1\]: expected an object"):
        parse_notification({**payload("G", [alert("f1")]), "alerts": [alert("f1"), 3]})


def _accept(
    box: Outbox, fps: list[str], now: float, status: str = "firing", starts: str = "t0"
) -> dict[str, str]:
    n = parse_notification(payload("G", [alert(f, status=status, starts_at=starts) for f in fps]))
    policies = {"AtlasDiskUsage": AlertPolicy(cooldown_seconds=600)}
    plans = plan(n, [ChannelPolicy("webhook"), ChannelPolicy("slack")], policies)
    return box.accept(n.dedupe_key, n.group_key, n.status, n.as_dict(), plans, now).deliveries


def test_cooldown_holds_a_refire_within_it_but_never_a_status_change(any_outbox: Outbox) -> None:
    box = any_outbox  # on each backend; the fixture closes it
    assert _accept(box, ["f1"], now=1000) == {"webhook": "pending", "slack": "pending"}
    # The same alert again in a new notification (a new startsAt, so not a duplicate) 5 min later.
    assert _accept(box, ["f1"], now=1300, starts="t1") == {"webhook": "skipped", "slack": "skipped"}
    # A group that gained f2: only f2 is new to the channels.
    _accept(box, ["f1", "f2"], now=1310, starts="t2")
    newest = box.deliveries(limit=2)
    assert {d["state"] for d in newest} == {"pending"}
    # Resolved is a status change: sent at once despite the cooldown.
    assert _accept(box, ["f1"], now=1320, status="resolved") == {"webhook": "pending", "slack": "pending"}
    # After the cooldown the same firing alert goes out again.
    assert _accept(box, ["f1"], now=1320 + 601, starts="t3") == {"webhook": "pending", "slack": "pending"}
    skipped = box.deliveries(state="skipped")
    assert skipped and all(d["last_error"].startswith("cooldown") for d in skipped)


def test_a_claim_walks_pending_deliveries_in_order_without_sorting_them(tmp_path: Path) -> None:
    """With every pending row sorted first, a claim cost ~5 ms at 1,000 pending, under the lock
    the bookkeeping commits share (bench/router.py); the index lets it stop at its limit."""
    box = SQLiteOutbox(tmp_path / "alert-router.db", synchronous="NORMAL")
    try:
        plan_rows = box._db.execute(
            "EXPLAIN QUERY PLAN " + _CLAIM, {"channel": "c", "now": 0, "lease_until": 1, "limit": 8}
        ).fetchall()
    finally:
        box.close()
    details = [str(r["detail"]) for r in plan_rows]
    assert not [d for d in details if "TEMP B-TREE" in d], details


def test_an_override_template_edited_after_start_is_not_used_unchecked(tmp_path: Path) -> None:
    """Templates are checked when the router starts; a file changed later must not be picked up
    (nor stat'ed on every render, which cost CPU per email)."""
    override = tmp_path / OVERRIDE_DIR / "email_subject.txt.j2"
    override.parent.mkdir(parents=True)
    override.write_text("checked {{ status }}", encoding="utf-8")
    renderer = Renderer(tmp_path)
    note = parse_notification(payload("G", [alert("f1")]))
    assert renderer.render("email_subject.txt.j2", note) == "checked firing"
    override.write_text("{{ broken", encoding="utf-8")
    os.utime(override, (override.stat().st_atime + 10, override.stat().st_mtime + 10))
    assert renderer.render("email_subject.txt.j2", note) == "checked firing"
