"""Webhook channel: POST the normalised notification as JSON.

Headers: the configured ones, `Authorization: Bearer` when a token secret is set,
`Idempotency-Key` (the same for every attempt of one delivery, so a receiver can drop the copy a
crash-and-resend produces), and `X-Atlas-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact
body bytes under the `hmac_secret` secret (GitHub's webhook signature scheme).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from atlas import __version__
from atlas.alerting.router.channels.base import (
    Outgoing,
    TransientDeliveryError,
    http_status_error,
    parse_retry_after,
)
from atlas.alerting.router.channels.deadline import DEADLINES, Watch, expired_error_message
from atlas.errors import ConfigError

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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook url: expected http(s)://host/..., got {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.concurrency = concurrency
        self.timeout = timeout_seconds
        self.hmac_secret = hmac_secret
        base = {"User-Agent": f"Atlas-alert-router/{__version__}", **(headers or {})}
        base["Content-Type"] = "application/json"
        if bearer_token:
            base["Authorization"] = f"Bearer {bearer_token}"
        self._headers = base
        self._ssl = ssl.create_default_context() if self._https else None
        self._local = threading.local()
        self._connections: set[http.client.HTTPConnection] = set()
        self._connections_lock = threading.Lock()

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
        with DEADLINES.watch(self.timeout) as watch:  # the whole attempt, not each socket operation
            status, reason, text, retry_after = self._attempt(body, headers, watch)
            if watch.expired:  # it ended just as its deadline came: its socket is shut now
                self._drop()
        if not 200 <= status < 300:
            raise http_status_error(status, text or reason, parse_retry_after(retry_after))

    def _attempt(
        self, body: bytes, headers: dict[str, str], watch: Watch
    ) -> tuple[int, str, str, str | None]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            watch.target = conn
            try:
                return self._post(conn, body, headers)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # The other side closed the idle kept-alive connection: a new one below. (It may
                # have got the request first; the Idempotency-Key lets a receiver drop the copy.)
                self._drop()
                if watch.expired:
                    raise TransientDeliveryError(expired_error_message(watch)) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise _transport_error(exc, watch) from exc
        try:
            watch.target = conn = self._connect()
            return self._post(conn, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise _transport_error(exc, watch) from exc

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        with self._connections_lock:
            self._connections.add(conn)
        self._local.conn = conn
        return conn

    def _post(
        self, conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, str, str | None]:
        """(status, reason, the body's first 300 characters, Retry-After) of one POST on `conn`."""
        conn.request("POST", self._target, body, headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")[:300]  # read all: the connection is reused
        if response.will_close:
            self._drop()
        return response.status, response.reason, text, response.getheader("Retry-After")

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._connections_lock:
                self._connections.discard(conn)
            conn.close()

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()


def _transport_error(exc: BaseException, watch: Watch) -> TransientDeliveryError:
    if watch.expired:  # the deadline shut the socket: whatever the read or write then raised
        return TransientDeliveryError(expired_error_message(watch))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientDeliveryError(f"timeout: {type(exc).__name__}")
    return TransientDeliveryError(f"connection: {type(exc).__name__}: {exc}")
