"""Webhook channel: POST the normalised notification as JSON.

Headers: the configured ones, `Authorization: Bearer` when a token secret is set,
`Idempotency-Key` (the same for every attempt of one delivery, so a receiver can drop the copy a
crash-and-resend produces), and `X-Atlas-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact
body bytes under the `hmac_secret` secret (GitHub's webhook signature scheme).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from atlas import __version__
from atlas.alerting.router.channels.base import Outgoing, http_status_error, parse_retry_after
from atlas.alerting.router.channels.httppost import HttpPoster

SIGNATURE_HEADER = "X-Atlas-Signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        bearer_token: str = "",
        hmac_secret: str = "",
        timeout_seconds: float = 10.0,
        concurrency: int = 4,
    ) -> None:
        self.url = url
        self._poster = HttpPoster(url, timeout_seconds, what="webhook url")
        self.concurrency = concurrency
        self.timeout = timeout_seconds
        self.hmac_secret = hmac_secret
        base = {"User-Agent": f"Atlas-alert-router/{__version__}", **(headers or {})}
        base["Content-Type"] = "application/json"
        if bearer_token:
            base["Authorization"] = f"Bearer {bearer_token}"
        self._headers = base

    def payload(self, out: Outgoing) -> dict[str, Any]:
        return {
            **out.notification.as_dict(),
            "atlas": {"notification_id": out.notification_id, "delivery_id": out.delivery_id},
        }

    def send(self, out: Outgoing) -> None:
        body = json.dumps(self.payload(out), separators=(",", ":")).encode("utf-8")
        headers = {**self._headers, "Idempotency-Key": f"{out.dedupe_key}.{self.name}"}
        if self.hmac_secret:
            headers[SIGNATURE_HEADER] = signature(self.hmac_secret, body)
        status, reason, text, retry_after = self._poster.post(body, headers)
        if not 200 <= status < 300:
            raise http_status_error(status, text or reason, parse_retry_after(retry_after))

    def close(self) -> None:
        self._poster.close()
