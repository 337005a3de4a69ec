"""A webhook receiver in its own process, for bench/router.py (as tests/helpers/smtp_relay.py is
for mail).

In the benchmark process the receiver's threads waited for the GIL behind the 16 client threads,
so the time it took for a delivery included that wait; and `http.server` speaks HTTP/1.0 unless
told otherwise, so every delivery was a new TCP connection (and a new server thread). Here the
receiver is a subprocess speaking HTTP/1.1 with keep-alive, as a real webhook endpoint would.
For every POST it prints one JSON line {"at": time.monotonic() when the body was read, "group":
the body's groupKey, "key": the Idempotency-Key header} on stdout (CLOCK_MONOTONIC is one clock
for every process on the machine), after answering 200.

    python tests/helpers/webhook_sink.py      # prints "ready PORT" once listening
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any


def serve() -> None:
    out, lock = sys.stdout, threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the router's client reuses its connections
        # The status line and headers go out in one write, the body in another: on a kept-alive
        # connection Nagle held the body back until the client's delayed ACK (~40 ms a request).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            at = time.monotonic()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            line = {"at": at, "group": json.loads(body)["groupKey"], "key": self.headers["Idempotency-Key"]}
            with lock:
                out.write(json.dumps(line) + "\n")
                out.flush()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out.write(f"ready {server.server_address[1]}\n")
    out.flush()
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.shutdown()


class WebhookSinkProcess:
    """The parent's handle: start, the arrivals so far as (monotonic time, group key, idempotency
    key), stop."""

    def __init__(self) -> None:
        self.port = 0
        self.arrivals: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        word, _, port = self._proc.stdout.readline().partition(" ")
        if word != "ready":
            self.stop()
            raise RuntimeError(f"webhook sink did not start (said {word!r})")
        self.port = int(port)
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            r = json.loads(line)
            with self._lock:
                self.arrivals.append((float(r["at"]), str(r["group"]), str(r["key"])))

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(10)
        self._proc = None


if __name__ == "__main__":
    serve()
