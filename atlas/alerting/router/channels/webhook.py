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

import httpx

from atlas import __version__
from atlas.alerting.router.channels.base import (
    Outgoing,
    TransientDeliveryError,
    http_status_error,
    parse_retry_after,
    quiet_httpx,
)

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
        self.concurrency = concurrency
        self.hmac_secret = hmac_secret
        base = {"User-Agent": f"Atlas-alert-router/{__version__}", **(headers or {})}
        base["Content-Type"] = "application/json"
        if bearer_token:
            base["Authorization"] = f"Bearer {bearer_token}"
        quiet_httpx()
        self._client = httpx.Client(headers=base, timeout=timeout_seconds, follow_redirects=False)

    def payload(self, out: Outgoing) -> dict[str, Any]:
        return {
            **out.notification.as_dict(),
            "atlas": {"notification_id": out.notification_id, "delivery_id": out.delivery_id},
        }

    def send(self, out: Outgoing) -> None:
        body = json.dumps(self.payload(out), separators=(",", ":")).encode("utf-8")
        headers = {"Idempotency-Key": f"{out.dedupe_key}.{self.name}"}
        if self.hmac_secret:
            headers[SIGNATURE_HEADER] = signature(self.hmac_secret, body)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(f"timeout: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"connection: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise http_status_error(
                response.status_code, response.text, parse_retry_after(response.headers.get("Retry-After"))
            )

    def close(self) -> None:
        self._client.close()
