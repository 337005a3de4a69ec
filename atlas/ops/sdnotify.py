"""sd_notify(3) without libsystemd: readiness and a watchdog for Type=notify units.

systemd passes $NOTIFY_SOCKET (a path, or "@name" for an abstract socket) and, with WatchdogSec=,
$WATCHDOG_USEC (and $WATCHDOG_PID). A process says READY=1 once it can serve, STOPPING=1 when it
starts to stop, and WATCHDOG=1 at least every WATCHDOG_USEC or systemd kills and restarts it.

The watchdog only means something if a stuck process stops pinging. So `Watchdog` does not ping
from a timer thread on its own: each tick (half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
advises) it asks a probe whether the process's main loop turned within the last WATCHDOG_USEC,
and pings only then. Each process hands in its own main loop's `Liveness` (the engine's loop, the
API's and the alert router's event loops (atlas/ops/notifyserver.py), the exporter's serve loop,
the feed poller's loop, the monitoring agent's evaluation loop).

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, MutableMapping

from atlas.logging import get_logger

log = get_logger("atlas.ops")


class Notifier:
    """Sends sd_notify datagrams to `address` (None: not under a notify-aware manager)."""

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read (and, like sd_notify's unset_environment, remove) NOTIFY_SOCKET, WATCHDOG_USEC and
        WATCHDOG_PID, so the engine's workers and any program Atlas runs do not inherit them.
        A WATCHDOG_PID naming another process means the watchdog is not ours (sd_watchdog_enabled).
        """
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) or None
        usec_text = env.pop("WATCHDOG_USEC", "")
        pid_text = env.pop("WATCHDOG_PID", "")
        try:
            usec = int(usec_text) if usec_text else 0
        except ValueError:
            log.warning("WATCHDOG_USEC is not an integer; watchdog off", value=usec_text)
            usec = 0
        if pid_text and pid_text != str(os.getpid()):
            usec = 0
        return cls(address, max(usec, 0))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_seconds(self) -> float:
        """WatchdogSec as the manager set it (0: no watchdog)."""
        return self.watchdog_usec / 1e6 if self.address else 0.0

    def notify(self, state: str) -> bool:
        """Send `state` (e.g. "READY=1"); False when there is no socket or the send failed
        (a notification is advisory: a missing manager must not stop the process)."""
        if self.address is None:
            return False
        # "@name" is Linux's abstract namespace: the kernel wants a leading NUL byte instead.
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), target)
        except OSError as exc:
            log.warning("sd_notify failed", state=state.split("=", 1)[0], error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")


class Liveness:
    """When a main loop last turned. `beat()` is one attribute store: cheap enough for hot loops."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self.clock()

    def age(self) -> float:
        return self.clock() - self.last


class Watchdog:
    """Pings WATCHDOG=1 every half WatchdogSec while `alive()` says the main loop is turning."""

    def __init__(self, notifier: Notifier, alive: Callable[[], bool]) -> None:
        self.notifier = notifier
        self.alive = alive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        """Start the pinging thread (not when systemd asked for no watchdog); returns self."""
        interval = self.notifier.watchdog_seconds / 2
        if interval > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="atlas-watchdog", daemon=True
            )
            self._thread.start()
        return self

    def _run(self, interval: float) -> None:
        stalled = False
        while not self._stop.wait(interval):
            if self.alive():
                self.notifier.notify("WATCHDOG=1")
                stalled = False
            elif not stalled:  # once per stall: the journal says why systemd is about to kill us
                log.error("main loop stalled; withholding the watchdog ping")
                stalled = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def loop_alive(liveness: Liveness, notifier: Notifier) -> Callable[[], bool]:
    """A probe: the loop turned within the last WatchdogSec (systemd's own tolerance)."""
    limit = notifier.watchdog_seconds
    return lambda: liveness.age() < limit
