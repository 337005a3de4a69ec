"""Slack channel: an incoming webhook with Block Kit, paced and within Slack's limits.

Limits (https://api.slack.com/reference/block-kit/blocks): a header's text is at most 150
characters, a section's text 3,000, a section at most 10 fields of 2,000, a message at most 50
blocks. Longer text is cut and says so; alerts that do not fit are counted in a closing block.
Slack allows about one message a second per incoming webhook
(https://api.slack.com/apis/rate-limits#incoming-webhooks): sends to one URL are spaced by
MIN_INTERVAL_SECONDS, and a 429's Retry-After holds every send to that URL until it has passed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from atlas import __version__
from atlas.alerting.router.channels.base import (
    Deferred,
    Outgoing,
    TransientDeliveryError,
    http_status_error,
    parse_retry_after,
)
from atlas.alerting.router.channels.httppost import HttpPoster
from atlas.alerting.router.payload import Alert
from atlas.alerting.router.render import Renderer

HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
FIELDS_PER_SECTION = 10
MAX_BLOCKS = 50
MIN_INTERVAL_SECONDS = 1.0
# A wait longer than this is not slept through inside a send: the delivery is deferred instead,
# so one long Retry-After does not hold a sender thread.
_LONGEST_INLINE_WAIT_SECONDS = 2.0
COLOURS = {"critical": "#E01E5A", "warning": "#ECB22E", "resolved": "#2EB67D"}
KEY_LABELS = ("severity", "instance", "job", "service")


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters; a cut text ends saying it was cut."""
    if len(text) <= limit:
        return text
    note = "… (truncated)"
    return text[: limit - len(note)] + note


def _alert_blocks(renderer: Renderer, out: Outgoing, alert: Alert, external_url: str) -> list[dict[str, Any]]:
    text = renderer.render_alert("slack_alert.md.j2", out.notification, alert).strip()
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{k}*\n{alert.labels[k]}", FIELD_CHARS)}
        for k in KEY_LABELS
        if k in alert.labels
    ][:FIELDS_PER_SECTION]
    section: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(text, SECTION_CHARS)},
    }
    if fields:
        section["fields"] = fields
    links = []
    if alert.annotations.get("runbook_url"):
        links.append(f"<{alert.annotations['runbook_url']}|Runbook>")
    if alert.annotations.get("dashboard_url"):
        links.append(f"<{alert.annotations['dashboard_url']}|Dashboard>")
    if alert.generator_url:
        links.append(f"<{alert.generator_url}|Source>")
    if external_url:
        links.append(f"<{external_url}|Alertmanager>")
    blocks = [section]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    return blocks


def message(renderer: Renderer, out: Outgoing, channel: str = "") -> dict[str, Any]:
    """The webhook body: a header, then per alert a section (text + key labels) and its links."""
    n = out.notification
    header = cut(renderer.render("slack_header.txt.j2", n).strip(), HEADER_CHARS)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header}}]
    shown = 0
    for alert in n.alerts:
        more = _alert_blocks(renderer, out, alert, n.external_url)
        if len(blocks) + len(more) > MAX_BLOCKS - 1:  # keep one block for the "not shown" note
            break
        blocks += more
        shown += 1
    hidden = len(n.alerts) - shown + n.truncated_alerts
    if hidden:
        note = f"{hidden} more alert(s) not shown (Slack allows {MAX_BLOCKS} blocks a message)"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    severities = {a.severity for a in n.alerts if a.status == "firing"}
    colour = (
        COLOURS["resolved"]
        if n.status == "resolved"
        else COLOURS["critical" if "critical" in severities else "warning"]
    )
    body: dict[str, Any] = {"text": header, "attachments": [{"color": colour, "blocks": blocks}]}
    if channel:
        body["channel"] = channel
    return body


class SlackChannel:
    name = "slack"
    concurrency = 1  # one message a second per webhook URL: parallel sends would only queue

    def __init__(
        self,
        webhook_url: str,
        renderer: Renderer,
        *,
        channel: str = "",
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.url = webhook_url
        self.renderer = renderer
        self.channel = channel
        self._clock, self._sleep, self._wall = clock, sleep, wall
        self._lock = threading.Lock()
        self._next_allowed = 0.0  # monotonic: no send to this URL before
        # As the webhook channel posts: kept-alive http.client, the attempt bounded as a whole.
        self._poster = HttpPoster(webhook_url, timeout_seconds, what="slack webhook url")
        self._headers = {
            "User-Agent": f"Atlas-alert-router/{__version__}",
            "Content-Type": "application/json",
        }

    def send(self, out: Outgoing) -> None:
        body = json.dumps(message(self.renderer, out, self.channel), separators=(",", ":")).encode("utf-8")
        with self._lock:
            wait = self._next_allowed - self._clock()
            if wait > _LONGEST_INLINE_WAIT_SECONDS:
                raise Deferred(f"slack: holding sends for {wait:.1f}s", until=self._wall() + wait)
            if wait > 0:
                self._sleep(wait)
            try:
                status, reason, text, retry_after_header = self._poster.post(body, self._headers)
            finally:
                self._next_allowed = self._clock() + MIN_INTERVAL_SECONDS
            if status == 429:
                retry_after = parse_retry_after(retry_after_header) or MIN_INTERVAL_SECONDS
                self._next_allowed = self._clock() + retry_after
                raise TransientDeliveryError("HTTP 429: rate limited by Slack", retry_after=retry_after)
            if not 200 <= status < 300:
                raise http_status_error(status, text or reason, parse_retry_after(retry_after_header))

    def close(self) -> None:
        self._poster.close()
