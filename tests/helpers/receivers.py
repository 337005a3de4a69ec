"""Real receivers on 127.0.0.1 for the alert router's channels: an HTTP sink and an SMTP sink.

`HttpReceiver` records every request (arrival time, headers, body) and answers by its `script`:
a list of answers consumed one per request, then `default`. An answer is a status code, a
(status, headers) pair, or "hang" (hold the request until the test ends, so the client times out).
`SmtpSink` is aiosmtpd's Controller with a handler that records each message; `stop()` and
`start()` on the same port make an outage.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = int | tuple[int, dict[str, str]] | str


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 0  # the status code sent back (0 while hanging)
    peer: tuple[str, int] = ("", 0)  # the client's address: one per TCP connection


@dataclass
class HttpReceiver:
    default: Answer = 200
    script: list[Answer] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    keep_alive: bool = False  # HTTP/1.1 with kept-alive connections (default HTTP/1.0: one each)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._sockets: set[socket.socket] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if receiver.keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = receiver.keep_alive  # else the body waits for a delayed ACK

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._sockets.add(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                    got = Received(
                        time.monotonic(),
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        peer=self.client_address,
                    )
                    receiver.requests.append(got)
                if answer == "hang":
                    receiver._release.wait(60)
                    return
                status, headers = answer if isinstance(answer, tuple) else (int(answer), {})
                got.answered = status
                payload = b"ok" if status < 300 else b"no"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ok(self) -> list[Received]:
        """Requests answered 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    def drop_connections(self) -> None:
        """Close every open connection from this side, as a server does with idle kept-alive ones."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    def __init__(self, port: int, **controller: Any) -> None:
        """`controller`: aiosmtpd Controller options (tls_context, require_starttls, ssl_context,
        authenticator, auth_required, ...)."""
        from aiosmtpd.controller import Controller

        self.port = port
        self.messages: list[EmailMessage] = []
        self.arrived: list[float] = []  # time.monotonic() of each message, in step with `messages`
        self.rcpt_answer = ""  # e.g. "550 5.1.1 no such user": refuse every recipient with it
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_RCPT(
                self, server: Any, session: Any, envelope: Any, address: str, options: Any
            ) -> str:
                if sink.rcpt_answer:
                    return sink.rcpt_answer
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                with sink._lock:
                    sink.messages.append(msg)  # type: ignore[arg-type]
                    sink.arrived.append(time.monotonic())
                return "250 OK"

        self._make: Callable[[], Any] = lambda: Controller(
            Handler(), hostname="127.0.0.1", port=port, **controller
        )
        self.controller: Any = None

    def start(self) -> None:
        self.controller = self._make()
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def subjects(self) -> list[str]:
        with self._lock:
            return [str(m["Subject"]) for m in self.messages]
