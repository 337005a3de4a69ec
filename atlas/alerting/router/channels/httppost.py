"""JSON POSTs to one URL for the webhook and Slack channels: http.client over kept-alive
connections, one per sender thread (~0.3 ms of CPU a request against ~1.0 with httpx, measured in
bench/router.py), each attempt bounded by its timeout as a whole (atlas.alerting.router.channels.
deadline), not per socket operation.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from atlas.alerting.router.channels.base import TransientDeliveryError
from atlas.alerting.router.channels.deadline import DEADLINES, Watch, expired_error_message
from atlas.alerting.router.channels.perthread import PerThread
from atlas.errors import ConfigError

# (status, reason, the body's first 300 characters, Retry-After)
Answer = tuple[int, str, str, str | None]


class HttpPoster:
    def __init__(self, url: str, timeout_seconds: float, *, what: str) -> None:
        """`what` names the URL in a configuration error ("webhook url", "slack webhook url")."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{what}: expected http(s)://host/..., got {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout_seconds
        self._ssl = ssl.create_default_context() if self._https else None
        self._connections: PerThread[http.client.HTTPConnection] = PerThread()

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """One attempt; raises TransientDeliveryError when no answer came (timeout, connection)."""
        with DEADLINES.watch(self.timeout) as watch:  # the whole attempt, not each socket operation
            answer = self._attempt(body, headers, watch)
            if watch.expired:  # it ended just as its deadline came: its socket is shut now
                self._connections.drop()
        return answer

    def _attempt(self, body: bytes, headers: dict[str, str], watch: Watch) -> Answer:
        conn = self._connections.current()
        if conn is not None:
            watch.target = conn
            try:
                return self._post(conn, body, headers)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # The other side closed the idle kept-alive connection: a new one below. (It may
                # have got the request first; the Idempotency-Key lets a receiver drop the copy.)
                self._connections.drop()
                if watch.expired:
                    raise TransientDeliveryError(expired_error_message(watch)) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._connections.drop()
                raise _transport_error(exc, watch) from exc
        try:
            watch.target = conn = self._connections.keep(self._connect())
            return self._post(conn, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self._connections.drop()
            raise _transport_error(exc, watch) from exc

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return conn

    def _post(self, conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> Answer:
        conn.request("POST", self._target, body, headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")[:300]  # read all: the connection is reused
        if response.will_close:
            self._connections.drop()
        return response.status, response.reason, text, response.getheader("Retry-After")

    def close(self) -> None:
        for conn in self._connections.take_all():
            conn.close()


def _transport_error(exc: BaseException, watch: Watch) -> TransientDeliveryError:
    if watch.expired:  # the deadline shut the socket: whatever the read or write then raised
        return TransientDeliveryError(expired_error_message(watch))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientDeliveryError(f"timeout: {type(exc).__name__}")
    return TransientDeliveryError(f"connection: {type(exc).__name__}: {exc}")
