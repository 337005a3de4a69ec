"""The channel seam: every channel kind takes an `Outgoing` and sends it, or raises.

DeliveryError                  a delivery did not happen
├── TransientDeliveryError     timeouts, connection errors, 429, 5xx, SMTP 4xx: retry later
│                              (`retry_after` when the other side said how long to wait)
├── PermanentDeliveryError     other 4xx, SMTP 5xx, bad credentials: retrying cannot help
└── Deferred                   not now and not a failure (Slack's one-message-a-second
                               pace): run again at `until` without spending an attempt
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from atlas.alerting.router.payload import Notification
from atlas.errors import AtlasError


class DeliveryError(AtlasError):
    """A delivery did not happen."""


class TransientDeliveryError(DeliveryError):
    """A delivery failed in a way a later attempt may not; retried with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """A delivery failed in a way no retry can fix; the delivery is marked dead with the reason."""


class Deferred(DeliveryError):
    """The channel cannot send now; the delivery runs again at `until` without spending an attempt."""

    def __init__(self, message: str, *, until: float) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True)
class Outgoing:
    """One delivery: the notification as this channel sees it (only its alerts)."""

    delivery_id: int
    notification_id: int
    dedupe_key: str
    notification: Notification


class Channel(Protocol):
    name: str
    concurrency: int  # deliveries this channel may have under way at once

    def send(self, out: Outgoing) -> None:
        """Deliver `out`; raises a DeliveryError subclass when it did not happen."""

    def close(self) -> None: ...


def http_status_error(status: int, body: str, retry_after: float | None) -> DeliveryError:
    """The error of a non-2xx HTTP answer: 408, 429 and 5xx are transient, other 4xx permanent."""
    text = f"HTTP {status}: {body[:300]}".rstrip(": ")
    if status in (408, 429) or status >= 500:
        return TransientDeliveryError(text, retry_after=retry_after)
    return PermanentDeliveryError(text)


def parse_retry_after(value: str | None, cap_seconds: float = 3600.0) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare from webhooks)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), cap_seconds)
