"""The engine: claims due items in batches, runs them in worker processes, commits in batches.

One supervisor thread owns the database side (claims, heartbeats, reaping, commits); worker
processes run pipeline stages and never touch the database (see atlas.engine.worker). Because the
supervisor knows which items each worker holds, a worker that dies or hangs costs exactly its own
items a recorded death, and a poison item is found by running suspects alone.

Throughput comes from batching both ends: one transaction claims up to `claim_batch_size` items,
and completions are gathered for `commit_interval_ms` into one transaction.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import selectors
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from prometheus_client import CollectorRegistry

from atlas.engine import queue
from atlas.engine.budget import ClaimBudget
from atlas.engine.host_metrics import HostMetrics
from atlas.engine.pool import (
    LEASE_LAPSED_EXIT,
    RESTART_REASONS,
    Restarts,
    describe_exit,
    heartbeat_value,
    restart_reason,
)
from atlas.engine.wakeups import WorkWatcher
from atlas.engine.worker import WATCHDOG_SECONDS, build_pipeline, job_of, worker_main
from atlas.errors import AtlasError, ConfigError, PipelineError, StoreError
from atlas.logging import get_logger
from atlas.observability.metrics import EngineMetrics, watch_store_locks
from atlas.settings import Settings
from atlas.store.base import Store
from atlas.store.models import HEARTBEAT_KEY_PREFIX, MAINTENANCE_KEY, Claimed, ErrorInfo, Transition

log = get_logger("atlas.engine")

DEFAULT_PIPELINE = "atlas.pipeline:default_pipeline"
MAX_COMMIT_BATCH = 512
STORE_RETRY_SECONDS = 1.0
MAINTENANCE_CHECK_SECONDS = 1.0
# An engine that has not beaten for a day is gone (its own stop deletes its key): forget it.
STALE_HEARTBEAT_SECONDS = 86_400.0


def trace_id_of(item: Claimed) -> str | None:
    """The trace id in the item's stored W3C traceparent ("00-<trace id>-<span id>-<flags>")."""
    parts = (item.trace_context or "").split("-")
    return parts[1] if len(parts) == 4 else None


@dataclass
class _Worker:
    slot: int
    process: BaseProcess
    conn: Connection
    started: float
    # Insertion order is dispatch order; the worker starts jobs in that order.
    outstanding: dict[str, Claimed] = field(default_factory=dict)
    last_progress: float = 0.0
    ready: bool = False  # said hello: imports done, pipeline built (a crash before is not the items')
    isolating: bool = False  # running one suspect alone
    reserved: bool = False  # taking no new work until idle, to run a suspect alone


class Engine:
    """Run the pipeline over the queue until `stop()` (or SIGTERM) and a drain."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        pipeline: str = DEFAULT_PIPELINE,
        registry: CollectorRegistry | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.metrics = EngineMetrics(registry or CollectorRegistry())
        self.hosts = HostMetrics(self.metrics.registry)
        watch_store_locks(self.metrics.registry, store)
        for reason in RESTART_REASONS:
            self.metrics.worker_restarts.labels(reason)
        self.wall, self.monotonic, self.rand = wall, monotonic, rand
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.policy = queue.RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_cap_seconds=settings.backoff_cap_seconds,
            max_deaths=settings.max_deaths,
        )
        self.concurrency = settings.worker_concurrency
        self.per_worker = self.concurrency * 4  # running + queued in the pipe: fewer, larger messages
        # What this engine may hold claimed and unfinished (atlas.engine.budget): near what its
        # workers run, so other engines on the database get a share of a backlog.
        self.budget = ClaimBudget(
            running=settings.worker_count * self.concurrency,
            ceiling=max(settings.claim_batch_size, settings.worker_count * self.per_worker),
            prefetch_seconds=settings.claim_prefetch_seconds,
            now=monotonic(),
        )
        self._mp = multiprocessing.get_context("forkserver")
        self._workers: list[_Worker | None] = [None] * settings.worker_count
        self._restarts = Restarts(settings.worker_count)
        self._health = ("healthy", "workers running")  # as last published in the heartbeat
        self._pipeline_checked = False
        self._backlog: deque[Claimed] = deque()
        self._pending: list[tuple[Transition, Claimed]] = []
        self._pending_since = 0.0
        self._next_claim = self._next_heartbeat = self._next_reap = self._next_flush_retry = 0.0
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # Until when every lease we hold is known good: the last heartbeat that reached the
        # database plus a lease, less a margin for the commit that must land before it lapses.
        self._deadline = 0.0
        self._paused = False  # maintenance mode: finish what is running, claim nothing new
        self._next_maintenance_check = 0.0
        self._stop = False
        self._work_arrived = False  # set by the WorkWatcher's thread: claim now, not at the next poll
        # Called at the top of every turn of the loop (the systemd watchdog's liveness signal).
        self.on_turn: Callable[[], None] | None = None
        self._draining = False
        self._drain_deadline = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # One epoll set for the engine's life: rebuilding a wait set on every turn of the loop
        # (multiprocessing.connection.wait) cost more CPU than committing the items.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the engine to drain and return (safe from a signal handler or another thread)."""
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _on_work(self) -> None:
        """Items were enqueued (called from the WorkWatcher's thread): wake the loop to claim."""
        self._work_arrived = True
        try:
            os.write(self._wake_w, b"w")
        except OSError:
            pass

    def check_pipeline(self) -> None:
        """Build the pipeline once here, before any worker is forked, so that a pipeline that
        cannot be imported or built stops the engine at start with the reason instead of
        workers dying and being restarted forever. Raises ConfigError (a bad setting) or
        PipelineError (anything else), both naming the pipeline."""
        if self._pipeline_checked:
            return
        try:
            build_pipeline(self.pipeline, self.settings)
        except ConfigError as exc:
            raise ConfigError(f"pipeline {self.pipeline}: {exc}") from exc
        except AtlasError as exc:
            raise PipelineError(f"pipeline {self.pipeline} cannot be built: {exc}") from exc
        except Exception as exc:  # an import error, a bug in a factory: the start fails, with why
            raise PipelineError(
                f"pipeline {self.pipeline} cannot be built: {type(exc).__name__}: {exc}"
            ) from exc
        self._pipeline_checked = True

    def run(self) -> int:
        """Serve until stopped; returns the process exit code (0 after a clean drain).

        Raises ConfigError or PipelineError when the pipeline cannot be built (see check_pipeline).
        """
        self.check_pipeline()
        log.info(
            "engine starting",
            owner=self.owner,
            workers=len(self._workers),
            concurrency=self.concurrency,
            running=self.budget.running,
            claim_ceiling=self.budget.ceiling,
        )
        self._mp.set_forkserver_preload(["atlas.engine.worker"])
        for slot in range(len(self._workers)):
            self._spawn(slot)
        watcher = WorkWatcher.for_store(self.store, self._on_work)
        try:
            self._loop()
        finally:
            if watcher is not None:
                watcher.stop()  # before _shutdown closes the pipe it writes to
            self._shutdown()
        log.info("engine stopped", owner=self.owner)
        return 0

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            now = self.monotonic()
            if self.on_turn is not None:
                self.on_turn()
            if self._stop and not self._draining:
                self._begin_drain(now)
            self._respawn_due(now)
            if now >= self._next_heartbeat:
                self._heartbeat(now)
            if now >= self._next_maintenance_check:
                self._check_maintenance(now)
            if self._can_claim(now) and now >= self._next_claim:
                self._claim(now)
            self._dispatch(now)
            if now >= self._next_reap:
                self._reap(now)
            self._kill_hung(now)
            self._maybe_flush(now)
            if self._draining:
                if self._held() == 0:
                    break
                if now >= self._drain_deadline:
                    self._abandon_running()
                    break
            timeout = max(0.0, self._next_wakeup(now) - now)
            for key, _ in self._selector.select(timeout):
                self._on_ready(key.data)
        self._flush(force=True)

    def _next_wakeup(self, now: float) -> float:
        deadlines = [self._next_heartbeat, self._next_reap, now + 1.0]
        if self._can_claim(now):
            deadlines.append(self._next_claim)
        deadlines.append(self._next_maintenance_check)
        if self._pending:
            deadlines.append(
                max(self._pending_since + self.settings.commit_interval_ms / 1000, self._next_flush_retry)
            )
        if self._draining:
            deadlines.append(self._drain_deadline)
        for w in self._live():
            if w.outstanding:
                deadlines.append(w.last_progress + self.settings.item_timeout_seconds)
        deadlines.extend(self._restarts.next_at())
        return min(deadlines)

    def _on_ready(self, data: tuple[str, _Worker] | None) -> None:
        if data is None:
            os.read(self._wake_r, 512)
            if self._work_arrived:
                self._work_arrived = False
                self._next_claim = min(self._next_claim, self.monotonic())
            return
        what, w = data
        if self._workers[w.slot] is not w:
            return  # already handled: conn and sentinel of a dead worker are both ready
        self._read_results(w)  # whatever it finished, even just before dying, still counts
        if what == "sentinel":
            self._on_worker_exit(w, timed_out=False)

    # -- workers --------------------------------------------------------------------------------

    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if w is not None]

    def _spawn(self, slot: int) -> None:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=worker_main,
            args=(child, self.pipeline, self.concurrency, self.settings),
            name=f"atlas-worker-{slot}",
            daemon=True,
        )
        process.start()
        child.close()
        now = self.monotonic()
        w = _Worker(slot, process, parent, started=now, last_progress=now)
        self._restarts.started(slot, now)
        self._workers[slot] = w
        self._selector.register(parent.fileno(), selectors.EVENT_READ, ("conn", w))
        self._selector.register(process.sentinel, selectors.EVENT_READ, ("sentinel", w))
        self.metrics.workers.set(len(self._live()))

    def _forget(self, w: _Worker) -> None:
        self._selector.unregister(w.conn.fileno())
        self._selector.unregister(w.process.sentinel)
        w.conn.close()
        self._workers[w.slot] = None

    def _respawn_due(self, now: float) -> None:
        if self._draining:
            return
        for slot in self._restarts.due(now):
            if self._workers[slot] is None:
                self._spawn(slot)

    def _read_results(self, w: _Worker) -> None:
        try:
            while w.conn.poll():
                for message in w.conn.recv():
                    self._on_result(w, message)
        except (EOFError, OSError):
            pass  # the sentinel reports the death

    def _on_result(self, w: _Worker, message: tuple[Any, ...]) -> None:
        if message[0] == "ready":
            w.ready = True
            return
        if message[0] == "hosts":
            self.hosts.update(w.slot, message[1])
            return
        item = w.outstanding.pop(message[1], None)
        if item is None:
            return
        now = self.monotonic()
        w.last_progress = now
        self._restarts.finished_item(w.slot)
        self.budget.finished(1, now)
        if not w.outstanding:
            w.isolating = False
        for stage, seconds in message[-1].items():
            self._child(self.metrics.stage_duration, stage).observe(seconds)
        if message[0] == "ok":
            transition = queue.succeeded(item, message[2], message[-1])
        elif message[0] == "defer":
            transition = queue.deferred(item, message[3], message[2])
        else:
            error: ErrorInfo = message[2]
            transition = queue.failed(
                item, error, permanent=message[3], policy=self.policy, now=self.wall(), rand=self.rand
            )
            log.info(
                "attempt failed",
                item_id=item.id,
                attempt=item.attempts + 1,
                stage=error.stage,
                error_class=error.error_class,
                error=error.message[:300],
                next_state=transition.state,
            )
        self._add_pending(transition, item, now)

    def _on_worker_exit(self, w: _Worker, *, timed_out: bool) -> None:
        w.process.join(timeout=5)
        code = w.process.exitcode
        items = list(w.outstanding.values())
        # Jobs start in dispatch order, `concurrency` at a time: only the first ones can have been
        # running. One suspect alone is a clear verdict; several share the blame and run alone next.
        suspects, unstarted = items[: self.concurrency], items[self.concurrency :]
        if code == LEASE_LAPSED_EXIT:
            # Not the items' fault: our heartbeats stopped reaching the database. Give them back.
            suspects, unstarted = [], items
            reason, cls, what = "lease_lapsed", "", ""
        elif timed_out:
            reason, cls = "timeout", "WorkerTimeout"
            what = f"worker pid {w.process.pid} made no progress for {self.settings.item_timeout_seconds:g}s"
        else:
            reason, cls = "died", "WorkerDied"
            what = f"worker pid {w.process.pid} died ({describe_exit(code)})"
        alone = len(suspects) == 1
        now, wall = self.monotonic(), self.wall()
        for item in suspects:
            message = what + (" running this item alone" if alone else f" running {len(suspects)} items")
            error = ErrorInfo("worker", cls, message)
            self._add_pending(
                queue.died(item, error, alone=alone, timed_out=timed_out, policy=self.policy, now=wall),
                item,
                now,
            )
        for item in unstarted:
            self._add_pending(queue.released(item, wall), item, now)
        self.metrics.worker_deaths.labels(reason).inc()
        restart = restart_reason(ready=w.ready, exitcode=code, timed_out=timed_out)
        delay = None
        if not self._draining:
            how = "timed out" if timed_out else describe_exit(code)
            delay = self._restarts.lost(
                w.slot, now=now, running_items=bool(suspects), what=f"{restart}, {how}"
            )
            self.metrics.worker_restarts.labels(restart).inc()
        log.warning(
            "worker lost",
            slot=w.slot,
            pid=w.process.pid,
            exitcode=code,
            reason=reason,
            restart_reason=restart,
            restart_in_seconds=delay,
            suspects=[i.id for i in suspects],
            released=len(unstarted),
        )
        self._forget(w)
        self.hosts.forget(w.slot)
        self.metrics.workers.set(len(self._live()))
        self._publish_health(now)
        self._flush(force=True)  # deaths are rare; record them at once

    def _kill_hung(self, now: float) -> None:
        for w in self._live():
            if w.outstanding and now - w.last_progress > self.settings.item_timeout_seconds:
                w.process.kill()
                self._read_results(w)
                self._on_worker_exit(w, timed_out=True)

    # -- claiming and dispatching ---------------------------------------------------------------

    def _held(self) -> int:
        return len(self._backlog) + sum(len(w.outstanding) for w in self._live())

    def _can_claim(self, now: float) -> bool:
        # Half the budget left: claims stay few and large (each is a write transaction).
        return not self._draining and not self._paused and self._held() <= self.budget.capacity(now) // 2

    @property
    def paused(self) -> bool:
        """True while maintenance mode holds claiming (seen within MAINTENANCE_CHECK_SECONDS)."""
        return self._paused

    def _check_maintenance(self, now: float) -> None:
        self._next_maintenance_check = now + MAINTENANCE_CHECK_SECONDS
        try:
            raw = self.store.kv_get(MAINTENANCE_KEY)
        except StoreError:
            return  # claims will fail and say so
        paused = bool(raw and json.loads(raw).get("enabled"))
        if paused != self._paused:
            log.info("maintenance mode " + ("on: claiming paused" if paused else "off: claiming resumed"))
        self._paused = paused

    def _claim(self, now: float) -> None:
        limit = min(self.settings.claim_batch_size, self.budget.capacity(now) - self._held())
        if limit <= 0 or not self._live():
            return
        try:
            claimed = self.store.claim(self.owner, limit, self.settings.lease_seconds)
        except StoreError as exc:
            log.error("claim failed", error=str(exc))
            self._next_claim = now + STORE_RETRY_SECONDS
            return
        if claimed:
            self._backlog.extend(claimed)
            self.metrics.claim_batch.observe(len(claimed))
        self.metrics.in_flight.set(self._held())
        # A short claim means nothing more is due now: look again after the poll interval.
        self._next_claim = now if len(claimed) == limit else now + self.settings.poll_interval_ms / 1000

    def _dispatch(self, now: float) -> None:
        if not self._backlog:
            return
        live = [w for w in self._live() if w.ready]
        batches: dict[int, list[Claimed]] = {w.slot: [] for w in live}
        free = {w.slot: self.per_worker - len(w.outstanding) for w in live}
        total_free = sum(free.values())
        keep: deque[Claimed] = deque()
        turn = 0
        for item in self._backlog:
            target: _Worker | None = None
            if item.isolate:
                target = self._isolated_target(live)
                if target is not None:
                    target.isolating, target.reserved = True, False
                    total_free -= free[target.slot]
                    free[target.slot] = 0
            elif total_free > 0:
                for _ in range(len(live)):  # round-robin over workers with room
                    w = live[turn % len(live)]
                    turn += 1
                    if free[w.slot] > 0 and not w.isolating and not w.reserved:
                        target = w
                        free[w.slot] -= 1
                        total_free -= 1
                        break
            if target is None:
                keep.append(item)
                continue
            if not target.outstanding:
                target.last_progress = now
            target.outstanding[item.id] = item
            batches[target.slot].append(item)
        self._backlog = keep
        for w in live:
            if batches[w.slot]:
                try:
                    w.conn.send(("run", [job_of(i) for i in batches[w.slot]], self._deadline))
                except OSError:
                    pass  # it died; its sentinel is ready and the death handler settles its items

    def _isolated_target(self, live: list[_Worker]) -> _Worker | None:
        for w in live:
            if not w.outstanding and not w.isolating:
                return w
        if not any(w.reserved for w in live):
            candidates = [w for w in live if not w.isolating]
            if candidates:
                min(candidates, key=lambda w: len(w.outstanding)).reserved = True
        return None

    # -- leases ---------------------------------------------------------------------------------

    def _note_health(self, now: float) -> bool:
        """Recompute the engine's health; returns True when it is what was last published."""
        health = self._restarts.status(now)
        if health == self._health:
            return True
        if health[0] != self._health[0]:
            log.warning("engine health changed", status=health[0], why=health[1])
        self._health = health
        return False

    def _publish_health(self, now: float) -> None:
        """Write the engine's health into its heartbeat key when it changed (the API reads it)."""
        if self._note_health(now):
            return
        try:
            self.store.kv_set(HEARTBEAT_KEY_PREFIX + self.owner, heartbeat_value(self.wall(), *self._health))
        except StoreError as exc:
            log.error("publishing engine health failed", error=str(exc))

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.settings.lease_seconds / 3
        sent_at = self.wall()
        try:
            self.store.heartbeat(self.owner, self.settings.lease_seconds)
            self._note_health(now)
            self.store.kv_set(HEARTBEAT_KEY_PREFIX + self.owner, heartbeat_value(self.wall(), *self._health))
        except StoreError as exc:
            log.error("heartbeat failed", error=str(exc))
            self._next_heartbeat = now + STORE_RETRY_SECONDS
            return
        lease = self.settings.lease_seconds
        # The margin covers the worker's watchdog period and a second for our commit to land.
        self._deadline = sent_at + lease - min(lease * 0.25, 1.0 + WATCHDOG_SECONDS)
        for w in self._live():
            try:
                w.conn.send(("extend", self._deadline))
            except OSError:
                pass  # it died; its sentinel will tell

    def _reap(self, now: float) -> None:
        self._next_reap = now + max(0.5, self.settings.lease_seconds / 4)
        try:
            reaped = self.store.reap_expired(self.settings.max_lease_expiries)
            self.store.kv_prune(HEARTBEAT_KEY_PREFIX, STALE_HEARTBEAT_SECONDS)
        except StoreError as exc:
            log.error("reaping expired leases failed", error=str(exc))
            return
        if reaped:
            self.metrics.leases_expired.inc(reaped)
            log.warning("expired leases taken back", count=reaped)

    # -- committing -----------------------------------------------------------------------------

    def _add_pending(self, transition: Transition, item: Claimed, now: float) -> None:
        if not self._pending:
            self._pending_since = now
        self._pending.append((transition, item))

    def _maybe_flush(self, now: float) -> None:
        if not self._pending or now < self._next_flush_retry:
            return
        due = now - self._pending_since >= self.settings.commit_interval_ms / 1000
        if due or len(self._pending) >= MAX_COMMIT_BATCH or self._held() == 0:
            self._flush()

    def _flush(self, force: bool = False) -> None:
        while self._pending:
            batch = self._pending[:MAX_COMMIT_BATCH]
            started = time.perf_counter()
            try:
                applied = self.store.apply([t for t, _ in batch])
            except StoreError as exc:
                # Keep them: the leases stay ours while heartbeats go through; if they lapse the
                # items are claimed again and our stale tokens are ignored. Nothing is lost.
                log.error("commit failed; will retry", error=str(exc), pending=len(self._pending))
                self._next_flush_retry = self.monotonic() + STORE_RETRY_SECONDS
                if not force:
                    return
                time.sleep(STORE_RETRY_SECONDS)
                if self.monotonic() > self._drain_deadline + self.settings.lease_seconds:
                    return  # give up: the leases will expire and the items run again
                continue
            self.metrics.commit_duration.observe(time.perf_counter() - started)
            self.metrics.commit_batch.observe(len(batch))
            del self._pending[: len(batch)]
            self._record(batch, applied)
        self._pending_since = self.monotonic()
        self.metrics.in_flight.set(self._held())

    def _record(self, batch: list[tuple[Transition, Claimed]], applied: dict[str, str]) -> None:
        wall = self.wall()
        for transition, item in batch:
            outcome = applied.get(item.id)
            if outcome is None:
                log.warning("lease lost before commit; result discarded", item_id=item.id)
                continue
            if outcome in ("released", "deferred"):
                if outcome == "deferred":
                    self.metrics.deferred.labels(item.kind).inc()
                continue
            self._child(self.metrics.processed, item.kind, outcome).inc()
            if transition.state == "queued" and outcome == "retry":
                self.metrics.retries.labels(item.kind).inc()
            if transition.state == "dead":
                self.metrics.dead_lettered.labels(item.kind, transition.dead_reason or "unknown").inc()
            if transition.state in ("done", "dead"):
                self._child(self.metrics.accept_to_done, item.kind).observe(max(0.0, wall - item.created_at))

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() costs a lock and a dict build per call; thousands of items a second notice.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- stopping -------------------------------------------------------------------------------

    def _begin_drain(self, now: float) -> None:
        self._draining = True
        # Finish what is running within most of a lease, so no other engine takes it meanwhile.
        self._drain_deadline = now + min(
            self.settings.lease_seconds * 0.8, self.settings.item_timeout_seconds
        )
        wall = self.wall()
        for item in self._backlog:
            self._add_pending(queue.released(item, wall), item, now)
        log.info(
            "draining",
            backlog_released=len(self._backlog),
            running=sum(len(w.outstanding) for w in self._live()),
        )
        self._backlog.clear()

    def _abandon_running(self) -> None:
        now, wall = self.monotonic(), self.wall()
        for w in self._live():
            w.process.kill()
            for item in w.outstanding.values():
                self._add_pending(queue.released(item, wall), item, now)
            w.outstanding.clear()

    def _shutdown(self) -> None:
        for w in self._live():
            try:
                w.conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for w in self._live():
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            self._forget(w)
        self._selector.close()
        try:
            # Anything still leased (a failed final commit) goes back without waiting for expiry.
            self.store.release(self.owner)
            self.store.kv_delete(HEARTBEAT_KEY_PREFIX + self.owner)
        except StoreError as exc:
            log.error("releasing leases at stop failed; they will expire", error=str(exc))
        os.close(self._wake_r)
        os.close(self._wake_w)
