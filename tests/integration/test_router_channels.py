"""The channels against real receivers on 127.0.0.1 (aiosmtpd, HTTP servers), driven by the real
router core (outbox file, sender workers) in this process."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from atlas.alerting.router.channels.base import Channel, Outgoing, PermanentDeliveryError
from atlas.alerting.router.channels.email import EmailChannel
from atlas.alerting.router.channels.slack import HEADER_CHARS, MAX_BLOCKS, SlackChannel, message
from atlas.alerting.router.channels.webhook import WebhookChannel
from atlas.alerting.router.metrics import RouterMetrics
from atlas.alerting.router.payload import parse_notification
from atlas.alerting.router.render import Renderer
from atlas.alerting.router.routing import ChannelPolicy
from atlas.alerting.router.sender import RetryPolicy
from atlas.alerting.router.service import AlertRouter
from atlas.store.outbox import Outbox
from tests.conftest import ROOT
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.receivers import HttpReceiver, SmtpSink
from tests.helpers.router import DASHBOARD_URL, alert, payload

RENDERER = Renderer(ROOT / "config")


@pytest.fixture
def outbox(any_outbox: Outbox) -> Outbox:
    """Every channel test runs on both outbox backends (SQLite file, PostgreSQL database)."""
    return any_outbox


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    yield sink
    sink.stop()


def running(outbox: Outbox, channel: Channel, **policy: Any) -> AlertRouter:
    router = AlertRouter(
        outbox,
        [(channel, ChannelPolicy(channel.name, **policy))],
        {},
        RouterMetrics(CollectorRegistry()),
        RetryPolicy(0.05, 0.5),
        lease_seconds=30,
    )
    router.start()
    return router


def sample(router: AlertRouter, name: str, **labels: str) -> float | None:
    """A value as the router's /metrics exposes it (the registry's public reader)."""
    return router.metrics.registry.get_sample_value(name, labels)


def states(outbox: Outbox) -> list[str]:
    return [d["state"] for d in outbox.deliveries()]


def email_channel(smtp: SmtpSink, outbox: Outbox) -> EmailChannel:
    return EmailChannel(
        RENDERER,
        host="127.0.0.1",
        port=smtp.port,
        sender="atlas@example.org",
        to=["ops@example.org", "oncall@example.org"],
        starttls=False,
        timeout_seconds=5,
        thread_root=lambda group, mid: outbox.thread_root(group, "email", mid),
    )


def test_email_is_multipart_with_an_alertmanager_subject_and_threads_per_group(
    smtp: SmtpSink, outbox: Outbox
) -> None:
    router = running(outbox, email_channel(smtp, outbox))
    try:
        router.accept(parse_notification(payload("AtlasDiskUsage", [alert("f1"), alert("f2")])))
        wait_for(lambda: len(smtp.messages) == 1, 30, "the firing email")
        resolved = [alert("f1", status="resolved"), alert("f2", status="resolved")]
        router.accept(parse_notification(payload("AtlasDiskUsage", resolved)))
        wait_for(lambda: len(smtp.messages) == 2, 30, "the resolved email")
    finally:
        router.stop()
    first, second = smtp.messages
    assert first["Subject"] == "[FIRING:2] AtlasDiskUsage (critical)"
    assert second["Subject"] == "[RESOLVED] AtlasDiskUsage (critical)"
    assert first.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in first.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = first.get_body(("plain",)).get_content()
    assert "2 alert(s) firing" in text and "https://runbooks.example/disk" in text
    assert f"dashboard: {DASHBOARD_URL}" in text  # the compiler's dashboard_url annotation
    html = first.get_body(("html",)).get_content()
    assert "<strong>[CRITICAL] AtlasDiskUsage</strong>" in html
    assert f'<a href="{DASHBOARD_URL}">dashboard</a>' in html
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["To"] == "ops@example.org, oncall@example.org"
    assert first["Message-Id"].startswith("<atlas-router.") and first["In-Reply-To"] is None
    assert second["In-Reply-To"] == first["Message-Id"] == second["References"]
    assert states(outbox) == ["sent", "sent"]


def test_email_with_non_ascii_labels_arrives_decoded(smtp: SmtpSink, outbox: Outbox) -> None:
    """Labels are any UTF-8: the subject is RFC 2047-encoded and the parts UTF-8, so the mail
    reads back as sent (the message is built with compat32 classes, which would otherwise write
    raw UTF-8 headers)."""
    channel = email_channel(smtp, outbox)
    note = alert("f1", name="PlatteVollÄ", instance="hôte-ü:9110")
    note["annotations"]["summary"] = "Disque plein à 97 % — ✓"
    try:
        channel.send(Outgoing(1, 1, "k" * 64, parse_notification(payload("G", [note]))))
    finally:
        channel.close()
    (msg,) = smtp.messages
    assert msg["Subject"] == "[FIRING:1] PlatteVollÄ (critical)"
    assert "Disque plein à 97 % — ✓" in msg.get_body(("plain",)).get_content()
    assert "hôte-ü:9110" in msg.get_body(("html",)).get_content()


def test_smtp_5xx_marks_the_delivery_dead_with_the_reason(smtp: SmtpSink, outbox: Outbox) -> None:
    smtp.rcpt_answer = "550 5.1.1 mailbox unavailable"
    channel = email_channel(smtp, outbox)
    out = Outgoing(1, 1, "k" * 64, parse_notification(payload("G", [alert("f1")])))
    with pytest.raises(PermanentDeliveryError, match="550"):
        channel.send(out)
    router = running(outbox, channel)
    try:
        router.accept(parse_notification(payload("G", [alert("f1")])))
        wait_for(lambda: states(outbox) == ["dead"], 30, "the delivery to go dead")
    finally:
        router.stop()
    assert "550" in outbox.deliveries()[0]["last_error"]
    assert sample(router, "atlas_router_deliveries_total", channel="email", outcome="dead") == 1


def test_webhook_retries_5xx_and_timeouts_and_gives_up_on_other_4xx(
    outbox: Outbox, hook: HttpReceiver
) -> None:
    hook.script = [500, "hang", (503, {"Retry-After": "0"}), 200, 400]
    channel = WebhookChannel(hook.url, timeout_seconds=0.5, concurrency=2)
    router = running(outbox, channel)
    try:
        router.accept(parse_notification(payload("A", [alert("a1")])))
        wait_for(lambda: states(outbox) == ["sent"], 30, "the retried delivery")
        assert len(hook.requests) == 4  # 500, timeout, 503, 200
        router.accept(parse_notification(payload("B", [alert("b1")])))
        wait_for(lambda: states(outbox)[0] == "dead", 30, "the 400 to go dead")
    finally:
        router.stop()
    assert outbox.deliveries()[0]["last_error"].startswith("HTTP 400")
    assert sample(router, "atlas_router_retries_total", channel="webhook") == 3
    assert sample(router, "atlas_router_deliveries_total", channel="webhook", outcome="failed") == 3


def test_slack_429_waits_as_told_and_sends_at_most_one_message_a_second(
    outbox: Outbox, hook: HttpReceiver
) -> None:
    hook.script = [(429, {"Retry-After": "2"})]
    router = running(outbox, SlackChannel(hook.url, RENDERER, channel="#alerts", timeout_seconds=5))
    try:
        for g in ("A", "B", "C"):
            router.accept(parse_notification(payload(g, [alert(g)])))
        wait_for(lambda: states(outbox) == ["sent"] * 3, 60, "three Slack messages")
    finally:
        router.stop()
    times = [r.at for r in hook.requests]
    assert len(times) == 4  # the 429, then three messages
    assert times[1] - times[0] >= 2.0  # Retry-After: 2 honoured
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times[1:]))  # one a second
    body = json.loads(hook.requests[1].body)
    assert body["channel"] == "#alerts" and body["text"].startswith("🔥 [FIRING:1] AtlasDiskUsage")
    blocks = body["attachments"][0]["blocks"]
    assert blocks[0]["type"] == "header" and body["attachments"][0]["color"] == "#E01E5A"
    assert {"type": "mrkdwn", "text": "*severity*\ncritical"} in blocks[1]["fields"]
    assert (
        "|Runbook>" in blocks[2]["elements"][0]["text"]
        and f"<{DASHBOARD_URL}|Dashboard>" in blocks[2]["elements"][0]["text"]
        and "|Alertmanager>" in blocks[2]["elements"][0]["text"]
    )


def test_slack_messages_stay_within_block_kit_limits_and_say_what_was_cut() -> None:
    long = "x" * 400
    alerts = [alert(f"f{i}") for i in range(60)]
    for a in alerts:
        a["annotations"]["description"] = "y" * 5000
    n = parse_notification(payload(long, alerts))
    n = type(n)(**{**n.__dict__, "group_labels": {"alertname": long}})
    body = message(RENDERER, Outgoing(1, 1, "k", n))
    blocks = body["attachments"][0]["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    header = blocks[0]["text"]["text"]
    assert len(header) <= HEADER_CHARS and header.endswith("(truncated)")
    sections = [b for b in blocks if b["type"] == "section"]
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert sections[0]["text"]["text"].endswith("(truncated)")
    assert "more alert(s) not shown" in blocks[-1]["elements"][0]["text"]


def test_webhook_sends_write_no_log_line_each(hook: HttpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs every request at INFO; in a burst that was a line per delivery through the
    redacting formatter (CPU in bench/router.py). The outbox is the audit trail instead."""
    caplog.set_level(logging.INFO)
    channel = WebhookChannel(hook.url, timeout_seconds=5)
    try:
        for i in range(3):
            channel.send(Outgoing(i, i, f"k{i}", parse_notification(payload("G", [alert(f"f{i}")]))))
    finally:
        channel.close()
    assert len(hook.ok()) == 3
    assert [r.getMessage() for r in caplog.records if r.name.startswith(("httpx", "httpcore"))] == []


def test_webhook_keeps_its_connection_alive_and_opens_a_new_one_when_the_server_dropped_it() -> None:
    """One kept-alive connection per sender thread; a connection the receiver closed while idle
    costs a reconnect, not a failed delivery."""
    hook = HttpReceiver(keep_alive=True)
    channel = WebhookChannel(hook.url, timeout_seconds=5)
    out = [Outgoing(i, i, f"k{i}", parse_notification(payload("G", [alert(f"f{i}")]))) for i in range(4)]
    try:
        channel.send(out[0])
        channel.send(out[1])
        hook.drop_connections()
        channel.send(out[2])
        channel.send(out[3])
    finally:
        channel.close()
        hook.close()
    peers = [r.peer for r in hook.ok()]
    assert len(peers) == 4 and [r.answered for r in hook.requests] == [200] * 4
    assert peers[0] == peers[1] and peers[2] == peers[3] and peers[1] != peers[2], peers


def test_email_headers_fold_under_78_columns_and_read_back() -> None:
    """The channel writes the message itself (not the email package's generator): long ASCII
    headers fold at spaces, non-ASCII ones are RFC 2047 words, and both read back unchanged."""
    long_group = "{}:{" + ", ".join(f'label{i}="value {i}"' for i in range(30)) + "}"
    channel = EmailChannel(
        RENDERER, host="127.0.0.1", port=1, sender="atlas@example.org", to=["ops@example.org"]
    )
    for group in (long_group, long_group.replace("value", "wért")):
        note = parse_notification({**payload("G", [alert("f1")]), "groupKey": group})
        raw = channel.build(Outgoing(1, 1, "d" * 64, note))
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        assert all(len(line) <= 78 for line in head.split("\r\n")), head
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["X-Atlas-Group-Key"] == group
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert "AtlasDiskUsage" in msg.get_body(("plain",)).get_content()
