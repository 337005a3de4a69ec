"""Commit batching: finished items' transitions, gathered for `commit_interval_ms` into one
transaction, and the metrics of what each commit applied.

Commits run on the store thread (atlas.engine.storethread), one at a time: while one writes, the
transitions that arrive meanwhile gather for the next, so batches grow with the load. Forced
flushes (a worker's death, the drain) wait for the store thread, then commit on the caller's.

A commit that fails keeps its transitions: the leases stay ours while heartbeats go through, and
if they lapse the items are claimed again and our stale tokens are ignored. Nothing is lost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from atlas.engine.storethread import StoreThread
from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.observability.metrics import EngineMetrics, observe_many
from atlas.store.base import Store
from atlas.store.models import Claimed, Transition

log = get_logger("atlas.engine")

MAX_COMMIT_BATCH = 512
STORE_RETRY_SECONDS = 1.0


class LabelCache:
    """Labelled children of metrics, made once: labels() costs a lock and a dict build per call,
    and thousands of items a second notice."""

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def __call__(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class Committer:
    """The transitions waiting for their commit, and committing them."""

    def __init__(
        self,
        store: Store,
        interval_seconds: float,
        metrics: EngineMetrics,
        children: LabelCache,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
        thread: StoreThread,
    ) -> None:
        self.store, self.interval_seconds, self.metrics = store, interval_seconds, metrics
        self.child, self.monotonic, self.wall = children, monotonic, wall
        self.thread = thread
        self.pending: list[tuple[Transition, Claimed]] = []
        self.committing = 0  # transitions in the commit on the store thread (0: none)
        self._since = 0.0  # when the oldest pending transition arrived
        self._next_retry = 0.0  # after a failed commit: not before this

    def add(self, transition: Transition, item: Claimed, now: float) -> None:
        if not self.pending:
            self._since = now
        self.pending.append((transition, item))

    def next_due(self) -> float | None:
        """When the pending transitions are due for their commit; None when there are none, or
        while a commit runs (its end wakes the loop)."""
        if not self.pending or self.committing:
            return None
        return max(self._since + self.interval_seconds, self._next_retry)

    def maybe_flush(self, now: float, *, idle: bool) -> bool:
        """Commit when the interval has passed, a full batch waits, or nothing else is running
        (`idle`: waiting longer would gather nothing more), and no commit runs. Returns True when
        it handed a batch to the store thread."""
        if not self.pending or now < self._next_retry or self.committing:
            return False
        if now - self._since >= self.interval_seconds or len(self.pending) >= MAX_COMMIT_BATCH or idle:
            self._submit()
            return True
        return False

    def _submit(self) -> None:
        batch = self.pending[:MAX_COMMIT_BATCH]
        del self.pending[: len(batch)]
        self.committing = len(batch)
        # What is left (more than a batch) is already due: it goes as soon as this one is done.

        def commit() -> None:  # on the store thread
            started = time.perf_counter()
            applied = self.store.apply([t for t, _ in batch])
            self.metrics.commit_duration.observe(time.perf_counter() - started)
            self.metrics.commit_batch.observe(len(batch))
            self.record(batch, applied)

        def committed(_: Any, error: BaseException | None) -> None:  # on the loop's thread
            self.committing = 0
            if error is None:
                if not self.pending:
                    self._since = self.monotonic()
                return
            if not isinstance(error, StoreError):
                raise error
            log.error("commit failed; will retry", error=str(error), pending=len(batch) + len(self.pending))
            self.pending[:0] = batch  # first again: nothing is lost
            self._next_retry = self.monotonic() + STORE_RETRY_SECONDS

        self.thread.submit(commit, committed)

    def flush(self, *, force: bool = False, give_up_at: float = 0.0) -> None:
        """Commit everything pending, in batches of MAX_COMMIT_BATCH. On a store error: keep them
        and retry after STORE_RETRY_SECONDS; with `force` (death, drain) retry here, blocking,
        until `give_up_at` (monotonic), after which the leases expire and the items run again.
        Waits for the store thread first (its commit's transitions come back on failure)."""
        self.thread.wait_idle()
        while self.pending:
            batch = self.pending[:MAX_COMMIT_BATCH]
            started = time.perf_counter()
            try:
                applied = self.store.apply([t for t, _ in batch])
            except StoreError as exc:
                log.error("commit failed; will retry", error=str(exc), pending=len(self.pending))
                self._next_retry = self.monotonic() + STORE_RETRY_SECONDS
                if not force:
                    return
                time.sleep(STORE_RETRY_SECONDS)
                if self.monotonic() > give_up_at:
                    return  # give up: the leases will expire and the items run again
                continue
            self.metrics.commit_duration.observe(time.perf_counter() - started)
            self.metrics.commit_batch.observe(len(batch))
            del self.pending[: len(batch)]
            self.record(batch, applied)
        self._since = self.monotonic()

    def record_finished(self, items: list[Claimed], applied: dict[str, str]) -> None:
        """Record items whose every outcome in `applied` is done or duplicate (atlas.engine.handoff)."""
        self._count([(item, applied[item.id]) for item in items], [])

    def record(self, batch: list[tuple[Transition, Claimed]], applied: dict[str, str]) -> None:
        finished_items: list[tuple[Claimed, str]] = []  # done or duplicate: nearly all
        rest: list[tuple[Transition, Claimed, str | None]] = []
        for transition, item in batch:
            outcome = applied.get(item.id)
            if outcome == "done" or outcome == "duplicate":
                finished_items.append((item, outcome))
            else:
                rest.append((transition, item, outcome))
        self._count(finished_items, rest)

    def _count(
        self,
        finished_items: list[tuple[Claimed, str]],
        rest: list[tuple[Transition, Claimed, str | None]],
    ) -> None:
        wall = self.wall()
        processed: Counter[tuple[str, str]] = Counter()  # one inc per (kind, outcome) per commit
        finished: dict[str, list[float]] = {}  # kind -> accept-to-done seconds, observed at once
        for item, outcome in finished_items:
            processed[item.kind, outcome] += 1
            finished.setdefault(item.kind, []).append(max(0.0, wall - item.created_at))
        for transition, item, lost_or_other in rest:
            if lost_or_other is None:
                log.warning("lease lost before commit; result discarded", item_id=item.id)
                continue
            outcome = lost_or_other
            if outcome in ("released", "deferred"):
                if outcome == "deferred":
                    self.metrics.deferred.labels(item.kind).inc()
                continue
            processed[item.kind, outcome] += 1
            if transition.state == "queued" and outcome == "retry":
                self.metrics.retries.labels(item.kind).inc()
            if transition.state == "dead":
                self.metrics.dead_lettered.labels(item.kind, transition.dead_reason or "unknown").inc()
            if transition.state in ("done", "dead"):
                finished.setdefault(item.kind, []).append(max(0.0, wall - item.created_at))
        for (kind, outcome), count in processed.items():
            self.child(self.metrics.processed, kind, outcome).inc(count)
        for kind, seconds in finished.items():
            observe_many(self.child(self.metrics.accept_to_done, kind), seconds)
