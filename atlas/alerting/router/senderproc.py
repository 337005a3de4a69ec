"""The senders in a process of their own: `atlas alert-router` starts it and supervises it.

Why: in one process, intake (uvicorn, parsing, the group commit) and the senders (rendering, HTTP
and SMTP clients, bookkeeping) shared one GIL, so CPU freed on either side sped up intake as much
as delivery; the router accepted a burst faster than it drained it and latency grew through the
burst (bench/router.py). Here each side has an interpreter of its own on the same WAL outbox.

The pipes between the two are the whole protocol:
- the child's stdin: one byte per accepted notification with pending deliveries ("look now";
  without it the child still polls the outbox every second). End of file (the parent closed it,
  or died, even by SIGKILL) means stop: finish the sends under way, commit their outcomes, exit 0.
- the child's stdout: "ready" once its senders run, then one line per attempt
  ("tally <channel> <outcome> <seconds>") that the parent counts in its own metrics, so /metrics
  stays one scrape target.

A new child waits for an exclusive lock on DATA_DIR/alert-router.senders.lock before it releases
leases: a previous child still finishing its sends (its parent was killed) is never overlapped,
so a delivery is never under way twice. SIGINT and SIGTERM are ignored: a terminal's Ctrl-C and
systemd's stop reach the whole process group, and the child must outlive them long enough for
the parent to stop it through its stdin (after the HTTP side has stopped accepting). The parent
restarts a child that exits while the router is not stopping.
"""

from __future__ import annotations

import fcntl
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Collection

from atlas.errors import AtlasError
from atlas.logging import get_logger

log = get_logger("atlas.router")
LOCK_FILE = "alert-router.senders.lock"
_RESTART_SECONDS = 1.0
_STOP_SECONDS = 30.0
_SWITCH_SECONDS = 0.001  # the child's own stop waits up to 15 s for its sends and bookkeeping


class SenderProcess:
    """The parent's handle (a `Senders`): starts, wakes, supervises and stops the child."""

    def __init__(self, tally: Callable[[str, str, float], None]) -> None:
        self.tally = tally
        self._lock = threading.Lock()  # guards _proc and writes to its stdin
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="atlas-router-senders", daemon=True)
        self._thread.start()

    def wake(self, channels: Collection[str] | None = None) -> None:
        if channels is not None and not channels:
            return
        with self._lock:
            if self._proc is None or self._proc.stdin is None:
                return
            try:
                os.write(self._proc.stdin.fileno(), b"w")
            except (BlockingIOError, OSError):
                pass  # pipe full (the child is behind: it will look anyway) or the child is gone

    def stop(self, timeout: float = _STOP_SECONDS) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.stdin is not None:
                proc.stdin.close()  # end of file: the child finishes its sends and exits
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("sender process did not stop; killing it", pid=proc.pid)
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout)

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                proc: subprocess.Popen[bytes] | None
                try:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "atlas.alerting.router.senderproc"],
                        stdin=subprocess.PIPE,
                        # Buffered: unbuffered, each line was read a byte (and a syscall) at a time.
                        stdout=subprocess.PIPE,
                    )
                except OSError as exc:
                    proc = None
                    log.error("cannot start the sender process", error=str(exc))
                if proc is not None and proc.stdin is not None:
                    os.set_blocking(proc.stdin.fileno(), False)  # a wake never blocks an accept
                self._proc = proc
            if proc is not None:
                log.info("sender process started", pid=proc.pid)
                self._read(proc)
                code = proc.wait()
                self._ready.clear()
                if self._stopping.is_set():
                    return
                log.error("sender process exited; restarting it", pid=proc.pid, exit_code=code)
            self._stopping.wait(_RESTART_SECONDS)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """Until the child's stdout ends: "ready", and the attempts it counts."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            parts = raw.decode("utf-8", "replace").split()
            if parts == ["ready"]:
                self._ready.set()
            elif len(parts) == 4 and parts[0] == "tally":
                try:
                    self.tally(parts[1], parts[2], float(parts[3]))
                except ValueError:
                    log.warning("sender process: unreadable line", line=raw[:200])


def _serve() -> int:
    """The child: load the settings as the parent did (same environment), send until stdin ends."""
    from atlas.alerting.router.process import build_senders
    from atlas.config.loader import load_settings
    from atlas.logging import configure_logging

    settings = load_settings()
    # Most sender threads wait on sockets; one that has its answer waits for the GIL, up to the
    # switch interval (5 ms by default) behind a thread rendering a message. An email is four
    # round trips to the relay, so that wait was paid four times a message.
    sys.setswitchinterval(_SWITCH_SECONDS)
    configure_logging(settings.log_level, process="atlas-alert-router", secrets=settings.secret_values())
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def write() -> None:
        # One thread writes, whatever has gathered at once: a sender never waits for the pipe
        # (nor for a parent busy with intake to read it). None: the senders have stopped.
        done = False
        while not done:
            batch = [lines.get()]
            while not lines.empty() and len(batch) < 512:
                batch.append(lines.get_nowait())
            done = None in batch
            try:
                os.write(1, "".join(line for line in batch if line is not None).encode())
            except OSError:
                return  # the parent is gone: stdin's end stops us; outcomes are in the outbox

    writer = threading.Thread(target=write, name="atlas-router-report", daemon=True)
    writer.start()

    def say(line: str) -> None:
        lines.put(line + "\n")

    def tally(channel: str, outcome: str, seconds: float) -> None:
        say(f"tally {channel} {outcome} {seconds:.6f}")

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a previous child may still be finishing its sends
        try:
            senders, outbox = build_senders(settings, tally)
        except AtlasError as exc:  # e.g. monitoring.yaml edited since the router checked it
            log.error("sender process cannot start", error=str(exc))
            return 2
        try:
            senders.start()
            say("ready")

            def listen() -> None:
                while os.read(0, 4096):
                    senders.wake()
                stop.set()

            threading.Thread(target=listen, name="atlas-router-wake", daemon=True).start()
            while not stop.wait(1.0):
                pass
        finally:
            senders.stop()
            outbox.close()
            lines.put(None)
            writer.join(5)  # the last sends' counts reach the parent's /metrics
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
