"""An SMTP sink in its own process, standing in for a local mail relay in bench/router.py.

Run inside the benchmark process, aiosmtpd's event loop competed for the GIL with the benchmark's
16 client threads and its HTTP receivers, so the email figure measured the sink's queue as much
as the router. Here the sink is a subprocess (as a real relay would be): for every message it
prints one JSON line {"at": time.monotonic() when DATA ended, "group": X-Atlas-Group-Key} on
stdout. CLOCK_MONOTONIC is one clock for every process on the machine (Linux), so `at` compares
with the parent's own time.monotonic(). Only the headers are parsed, after the time is taken.

    python tests/helpers/smtp_relay.py PORT      # prints "ready" once listening
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, Any


def serve(port: int) -> None:
    from aiosmtpd.controller import Controller

    out = sys.stdout
    parser = BytesHeaderParser()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            at = time.monotonic()
            headers = parser.parsebytes(envelope.content)
            out.write(json.dumps({"at": at, "group": str(headers["X-Atlas-Group-Key"] or "")}) + "\n")
            out.flush()
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    out.write("ready\n")
    out.flush()
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        controller.stop()


class SmtpRelayProcess:
    """The parent's handle: start, the arrivals so far as (monotonic time, group key), stop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrivals: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"smtp relay did not start (said {line!r})")
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            record = json.loads(line)
            with self._lock:
                self.arrivals.append((float(record["at"]), str(record["group"])))

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
    serve(int(sys.argv[1]))
