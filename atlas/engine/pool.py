"""Worker restarts: why a worker is restarted, how long to wait first, and what that says about
the engine's health.

A worker that cannot start (an import error, a bad setting the pipeline reads) or keeps dying
without finishing anything would otherwise be restarted in a tight loop while the API goes on
accepting items nobody processes. Each slot keeps its streak of restarts with no finished item and
no stable stretch in between; the wait before the next restart doubles with the streak (capped),
and a streak of `UNHEALTHY_STREAK` makes the engine report itself degraded (some slots failing) or
unhealthy (all of them) in its heartbeat, which the API's /health and /health/ready read.

A worker that dies while running items is not counted in the streak and comes back at once: the
items are the suspects, the death accounting dead-letters a poison item after a few deaths, and
isolating suspects one by one needs a fresh worker without delay.

Pure logic: the caller passes the clock's readings in.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

# The first restart is immediate (one crash is not a loop); the wait doubles from the second.
RESTART_BACKOFF_BASE_SECONDS = 0.5
RESTART_BACKOFF_CAP_SECONDS = 30.0
# Restarts in a row, with nothing finished in between, after which a slot counts as failing.
UNHEALTHY_STREAK = 3
# A worker alive this long is not crash-looping, even if it finished nothing (an idle queue).
STABLE_WORKER_SECONDS = 60.0

LEASE_LAPSED_EXIT = 75  # EX_TEMPFAIL: the worker exits because our heartbeats stopped landing

# Every value restart_reason returns. The engine creates each series at 0 when it starts: a
# counter's first appearance at 1 is invisible to increase(), so otherwise the first restart of
# each reason would never count towards AtlasEngineWorkerRestarts.
RESTART_REASONS = ("start_failed", "timeout", "heartbeat", "signal", "exit")


def restart_reason(*, ready: bool, exitcode: int | None, timed_out: bool) -> str:
    """The `reason` label of atlas_engine_worker_restarts_total for one worker's end."""
    if not ready:
        return "start_failed"  # died before its pipeline was built
    if timed_out:
        return "timeout"  # killed by the supervisor: no progress within the item timeout
    if exitcode == LEASE_LAPSED_EXIT:
        return "heartbeat"  # the supervisor's heartbeats stopped reaching the database
    if exitcode is not None and exitcode < 0:
        return "signal"
    return "exit"


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass
class _Slot:
    streak: int = 0
    restart_at: float = 0.0  # 0: no restart pending
    started_at: float | None = None  # when its current worker started; None: none running
    last: str = ""


class Restarts:
    """Restart bookkeeping for `slots` worker slots."""

    def __init__(self, slots: int) -> None:
        self._slots = [_Slot() for _ in range(slots)]

    def started(self, slot: int, now: float) -> None:
        self._slots[slot].started_at = now

    def finished_item(self, slot: int) -> None:
        """The slot's worker finished an item: whatever came before, the pipeline works."""
        self._slots[slot].streak = 0

    def lost(self, slot: int, *, now: float, running_items: bool, what: str) -> float:
        """Record the loss of the slot's worker; returns the delay before its restart."""
        s = self._slots[slot]
        self._settle(s, now)
        s.started_at = None
        if running_items:
            s.restart_at = now
            return 0.0
        s.streak += 1
        s.last = what
        delay = (
            0.0
            if s.streak == 1
            else min(RESTART_BACKOFF_CAP_SECONDS, RESTART_BACKOFF_BASE_SECONDS * 2 ** (s.streak - 2))
        )
        s.restart_at = now + delay
        return delay

    @staticmethod
    def _settle(s: _Slot, now: float) -> None:
        if s.started_at is not None and now - s.started_at >= STABLE_WORKER_SECONDS:
            s.streak = 0

    def due(self, now: float) -> list[int]:
        """Slots whose restart is due now (each is returned once)."""
        slots = [i for i, s in enumerate(self._slots) if s.restart_at and now >= s.restart_at]
        for i in slots:
            self._slots[i].restart_at = 0.0
        return slots

    def next_at(self) -> list[float]:
        return [s.restart_at for s in self._slots if s.restart_at]

    def status(self, now: float) -> tuple[str, str]:
        """(healthy | degraded | unhealthy, why) from the slots' streaks."""
        for s in self._slots:
            self._settle(s, now)
        failing = [(i, s) for i, s in enumerate(self._slots) if s.streak >= UNHEALTHY_STREAK]
        if not failing:
            return "healthy", "workers running"
        worst = max(failing, key=lambda f: f[1].streak)[1]
        message = (
            f"{len(failing)} of {len(self._slots)} worker(s) failing: {worst.streak} restarts in a row"
            f" with no item finished (last: {worst.last}); restarting with backoff"
        )
        return ("unhealthy" if len(failing) == len(self._slots) else "degraded"), message


# The status an engine leaves in its heartbeat key when it stops cleanly. The key stays (a deleted
# key read as "no engine since 1970" and paged AtlasEngineHeartbeatAge on every planned stop);
# readers tell a planned stop (this) from a crash (a last beat that is simply old).
STOPPED = "stopped"


def heartbeat_value(at: float, status: str, message: str) -> str:
    """What an engine writes under its heartbeat key: when it last beat and how it is."""
    return json.dumps({"at": at, "status": status, "message": message})


def parse_heartbeat(value: str) -> tuple[float, str, str]:
    """(at, status, message) of a heartbeat value; a bare Unix time (older engines) is healthy."""
    try:
        data = json.loads(value)
    except ValueError:
        return float(value), "healthy", ""
    if isinstance(data, int | float):
        return float(data), "healthy", ""
    return float(data["at"]), str(data.get("status", "healthy")), str(data.get("message", ""))
