"""The supervisor's pool of worker processes: starting them, their pipes, and their restarts.

Each worker (atlas.engine.worker) is a forkserver child with a duplex pipe; the pool registers its
pipe and its process sentinel in the engine's one selector, so the engine's loop wakes for a
result and for a death alike. What a worker holds (`outstanding`) is kept here, with the worker,
because a death settles exactly those items.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

from atlas.engine.messages import FromWorker, ToWorker
from atlas.engine.pool import Restarts
from atlas.engine.worker import worker_main
from atlas.observability.metrics import EngineMetrics
from atlas.settings import Settings
from atlas.store.models import Claimed


@dataclass
class Worker:
    slot: int
    process: BaseProcess
    conn: Connection
    started: float
    # Insertion order is dispatch order; the worker starts jobs in that order.
    outstanding: dict[str, Claimed] = field(default_factory=dict)
    # Handed documents in the Settle batches it was sent (never leased; atlas.engine.handoff).
    settling: dict[str, Claimed] = field(default_factory=dict)
    last_progress: float = 0.0
    ready: bool = False  # said hello: imports done, pipeline built (a crash before is not the items')
    isolating: bool = False  # running one suspect alone
    reserved: bool = False  # taking no new work until idle, to run a suspect alone

    def send(self, message: ToWorker) -> None:
        try:
            self.conn.send(message)
        except OSError:
            pass  # it died; its sentinel is ready and the death handler settles its items

    def receive(self) -> list[FromWorker]:
        """Every message waiting in the pipe (each send is a list of them)."""
        messages: list[FromWorker] = []
        try:
            while self.conn.poll():
                messages.extend(self.conn.recv())
        except (EOFError, OSError):
            pass  # the sentinel reports the death
        return messages


class WorkerPool:
    """`settings.worker_count` slots, each holding a live worker or None while it restarts."""

    def __init__(
        self,
        settings: Settings,
        pipeline: str,
        concurrency: int,
        selector: selectors.BaseSelector,
        metrics: EngineMetrics,
        monotonic: Callable[[], float],
        mp: ForkServerContext,
    ) -> None:
        self.settings, self.pipeline, self.concurrency = settings, pipeline, concurrency
        self.selector, self.metrics, self.monotonic, self.mp = selector, metrics, monotonic, mp
        self.slots: list[Worker | None] = [None] * settings.worker_count
        self.restarts = Restarts(settings.worker_count)

    def live(self) -> list[Worker]:
        return [w for w in self.slots if w is not None]

    def is_current(self, w: Worker) -> bool:
        """False once `w` has been forgotten (its pipe and its sentinel are both ready at death)."""
        return self.slots[w.slot] is w

    def spawn(self, slot: int) -> None:
        parent, child = self.mp.Pipe(duplex=True)
        process = self.mp.Process(
            target=worker_main,
            args=(child, self.pipeline, self.concurrency, self.settings),
            name=f"atlas-worker-{slot}",
            daemon=True,
        )
        process.start()
        child.close()
        now = self.monotonic()
        w = Worker(slot, process, parent, started=now, last_progress=now)
        self.restarts.started(slot, now)
        self.slots[slot] = w
        self.selector.register(parent.fileno(), selectors.EVENT_READ, ("conn", w))
        self.selector.register(process.sentinel, selectors.EVENT_READ, ("sentinel", w))
        self.metrics.workers.set(len(self.live()))

    def forget(self, w: Worker) -> None:
        self.selector.unregister(w.conn.fileno())
        self.selector.unregister(w.process.sentinel)
        w.conn.close()
        self.slots[w.slot] = None
        self.metrics.workers.set(len(self.live()))

    def respawn_due(self, now: float) -> None:
        for slot in self.restarts.due(now):
            if self.slots[slot] is None:
                self.spawn(slot)

    def stop_all(self, message: ToWorker, wait_seconds: float) -> None:
        """Send `message` (Stop) to every worker, give them `wait_seconds` together, kill the rest."""
        for w in self.live():
            w.send(message)
        deadline = self.monotonic() + wait_seconds
        for w in self.live():
            w.process.join(timeout=max(0.0, deadline - self.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            self.forget(w)
