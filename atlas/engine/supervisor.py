"""The engine: claims due items in batches, runs them in worker processes, commits in batches.

One supervisor thread owns the database side (claims, heartbeats, reaping, commits); worker
processes run pipeline stages and never touch the database (see atlas.engine.worker). Because the
supervisor knows which items each worker holds, a worker that dies or hangs costs exactly its own
items a recorded death, and a poison item is found by running suspects alone.

Throughput comes from batching both ends: one transaction claims up to `claim_batch_size` items
(while the engine holds no more than its claim budget, atlas.engine.budget), and completions are
gathered for `commit_interval_ms` into one transaction. Claims and commits run on the store
thread (atlas.engine.storethread), so the loop goes on reading results and dispatching while the
database writes; their outcomes come back to the loop, which alone decides.

This module is the loop and the decisions (claim, settle results and deaths, drain); the parts
it drives live beside it: the worker pool (workers), which worker runs what (dispatch), heartbeats
and reaping (leases), commit batching (commits), and the pipe's messages (messages).
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

from prometheus_client import CollectorRegistry

from atlas.engine import queue
from atlas.engine.budget import ClaimBudget
from atlas.engine.commits import STORE_RETRY_SECONDS, Committer, LabelCache
from atlas.engine.dispatch import assign
from atlas.engine.host_metrics import HostMetrics
from atlas.engine.inline import InlineDocuments, Settling
from atlas.engine.leases import Leases
from atlas.engine.messages import Extend, Failed, FromWorker, Hosts, Job, Ready, Run, Settle, Settled, Stop
from atlas.engine.pool import LEASE_LAPSED_EXIT, RESTART_REASONS, describe_exit, restart_reason
from atlas.engine.storethread import StoreThread
from atlas.engine.wakeups import WorkWatcher
from atlas.engine.worker import build_pipeline
from atlas.engine.workers import Worker, WorkerPool
from atlas.errors import AtlasError, ConfigError, PipelineError, StoreError
from atlas.logging import get_logger
from atlas.observability.metrics import EngineMetrics, observe_many, watch_store_locks
from atlas.pipeline.document import DocumentDecode, Normalise
from atlas.settings import Settings
from atlas.store.base import HandsOff, Store
from atlas.store.models import MAINTENANCE_KEY, Claimed, ClaimSettled, ErrorInfo, SettledDocument, Transition

log = get_logger("atlas.engine")

DEFAULT_PIPELINE = "atlas.pipeline:default_pipeline"
MAINTENANCE_CHECK_SECONDS = 1.0
# How long stopping waits for workers to finish their last message and exit before killing them.
WORKER_STOP_SECONDS = 5.0


def trace_id_of(item: Claimed) -> str | None:
    """The trace id in the item's stored W3C traceparent ("00-<trace id>-<span id>-<flags>")."""
    parts = (item.trace_context or "").split("-")
    return parts[1] if len(parts) == 4 else None


def _log_failure(item: Claimed, transition: Transition) -> None:
    error = transition.error
    assert error is not None
    log.info(
        "attempt failed",
        item_id=item.id,
        attempt=item.attempts + 1,
        stage=error.stage,
        error_class=error.error_class,
        error=error.message[:300],
        next_state=transition.state,
    )


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
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # One epoll set for the engine's life: rebuilding a wait set on every turn of the loop
        # (multiprocessing.connection.wait) cost more CPU than committing the items.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.workers = WorkerPool(
            settings,
            pipeline,
            self.concurrency,
            self._selector,
            self.metrics,
            monotonic,
            multiprocessing.get_context("forkserver"),
        )
        self.leases = Leases(store, self.owner, settings, self.metrics, wall)
        self._child = LabelCache()
        # Two on a database that writes transactions side by side: claims that settle documents
        # (atlas.engine.inline) then keep two of the server's cores busy, not one.
        self.store_thread = StoreThread(self._on_store_done, threads=2 if store.concurrent_writers else 1)
        self.commits = Committer(
            store,
            settings.commit_interval_ms / 1000,
            self.metrics,
            self._child,
            monotonic,
            wall,
            self.store_thread,
        )
        # Cheap documents settled in the claim's own transaction (atlas.engine.inline): the
        # default pipeline's document stages only, so any other pipeline runs all in workers.
        self.inline = (
            InlineDocuments(settings.inline_document_max_chars, self.policy, wall, rand)
            if pipeline == DEFAULT_PIPELINE and settings.inline_document_max_chars > 0
            else None
        )
        # Cheap documents settled by the workers, off the store thread (atlas.engine.handoff):
        # claims hand them out unleased, and the store writes each batch the workers send back.
        self._handing = store if self.inline is not None and isinstance(store, HandsOff) else None
        self._handed = 0  # handed out and not yet written or forgotten
        self._lease_only: set[str] = set()  # handed to a worker that died: leased next time
        self._inline_only: set[str] = set()  # a worker did not store them: settled inline next time
        # Settled by the workers, waiting for the write under way to end: one transaction each
        # time, as large as the load makes it (the full-text index's cost per row falls with it).
        self._to_write: list[tuple[SettledDocument, Claimed]] = []
        self._writing = False
        self._claiming = 0  # claims submitted to the store thread and not yet ended
        # The last claim was full and settled every item it chose (atlas.engine.inline): a
        # stream of cheap documents, where the next claim may wait in line behind the running one.
        self._settling_all = False
        # Of the claim budget, what claims under way may still lease (their lease limits): the
        # one waiting in line must not lease past the budget what the running one leases.
        self._lease_reserved = 0
        # A forced flush waits for the store thread: a claim ending meanwhile must not ask for the
        # next (_claimed_settling), or the wait lasts as long as the stream of cheap documents.
        self._flushing = False
        self._health = ("healthy", "workers running")  # as last published in the heartbeat
        self._pipeline_checked = False
        self._backlog: deque[Claimed] = deque()
        self._next_claim = self._next_heartbeat = self._next_reap = 0.0
        self._paused = False  # maintenance mode: finish what is running, claim nothing new
        self._next_maintenance_check = 0.0
        self._stop = False
        self._work_arrived = False  # set by the WorkWatcher's thread: claim now, not at the next poll
        # Work arrived since the last claim was asked for: that claim may have looked before it
        # was committed, so a short claim must not put the next one off until the next poll.
        self._work_since_claim = False
        # Called at the top of every turn of the loop (the systemd watchdog's liveness signal).
        self.on_turn: Callable[[], None] | None = None
        self._draining = False
        self._drain_deadline = 0.0

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

    def _on_store_done(self) -> None:
        """A claim or commit ended (called from the store thread): wake the loop to take it."""
        try:
            os.write(self._wake_w, b"s")
        except OSError:
            pass  # the pipe is full: the loop wakes anyway

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
            workers=len(self.workers.slots),
            concurrency=self.concurrency,
            running=self.budget.running,
            claim_ceiling=self.budget.ceiling,
        )
        self.workers.mp.set_forkserver_preload(["atlas.engine.worker"])
        for slot in range(len(self.workers.slots)):
            self.workers.spawn(slot)
        watcher = WorkWatcher.for_store(self.store, self._on_work)
        self.store_thread.start()
        try:
            self._loop()
        finally:
            if watcher is not None:
                watcher.stop()  # before _shutdown closes the pipe it writes to
            self.store_thread.stop()  # likewise
            self._shutdown()
        log.info("engine stopped", owner=self.owner)
        return 0

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            now = self.monotonic()
            if self.on_turn is not None:
                self.on_turn()
            self.store_thread.deliver()  # claims and commits that ended: their outcomes
            if self._stop and not self._draining:
                self._begin_drain(now)
            if not self._draining:
                self.workers.respawn_due(now)
            if now >= self._next_heartbeat:
                self._heartbeat(now)
            if now >= self._next_maintenance_check:
                self._check_maintenance(now)
            if self._can_claim(now) and now >= self._next_claim:
                self._claim(now)
            self._dispatch(now)
            if now >= self._next_reap:
                self._next_reap = now + self.leases.reap_seconds
                self.leases.reap()
            self._kill_hung(now)
            if self.commits.maybe_flush(now, idle=self._held() == 0):
                self.metrics.in_flight.set(self._held())
            if self._draining:
                if self._held() == 0 and not self._claiming and not self._handed:
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
        commit_due = self.commits.next_due()
        if commit_due is not None:
            deadlines.append(commit_due)
        if self._draining:
            deadlines.append(self._drain_deadline)
        for w in self.workers.live():
            if w.outstanding or w.settling:
                deadlines.append(w.last_progress + self.settings.item_timeout_seconds)
        deadlines.extend(self.workers.restarts.next_at())
        return min(deadlines)

    def _on_ready(self, data: tuple[str, Worker] | None) -> None:
        if data is None:
            os.read(self._wake_r, 512)
            if self._work_arrived:
                self._work_arrived = False
                self._work_since_claim = True
                self._next_claim = min(self._next_claim, self.monotonic())
            return
        what, w = data
        if not self.workers.is_current(w):
            return  # already handled: conn and sentinel of a dead worker are both ready
        self._read_results(w)  # whatever it finished, even just before dying, still counts
        if what == "sentinel":
            self._on_worker_exit(w, timed_out=False)

    # -- results and deaths ---------------------------------------------------------------------

    def _read_results(self, w: Worker) -> None:
        for message in w.receive():
            self._on_result(w, message)

    def _on_result(self, w: Worker, message: FromWorker) -> None:
        if isinstance(message, Ready):
            w.ready = True
            return
        if isinstance(message, Hosts):
            self.hosts.update(w.slot, message.snapshot)
            return
        if isinstance(message, Settled):
            self._on_settled(w, message)
            return
        item = w.outstanding.pop(message.item_id, None)
        if item is None:
            return
        now = self.monotonic()
        w.last_progress = now
        self.workers.restarts.finished_item(w.slot)
        self.budget.finished(1, now)
        if not w.outstanding:
            w.isolating = False
        for stage, seconds in message.timings.items():
            self._child(self.metrics.stage_duration, stage).observe(seconds)
        transition = queue.after(item, message, policy=self.policy, now=self.wall(), rand=self.rand)
        if isinstance(message, Failed):
            _log_failure(item, transition)
        self.commits.add(transition, item, now)

    def _on_worker_exit(self, w: Worker, *, timed_out: bool) -> None:
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
        handed = self._take_back_handed(w)
        # Never leased, so nothing to count now; leased next time, a second death counts.
        self._lease_only.update(handed)
        for item in suspects:
            message = what + (" running this item alone" if alone else f" running {len(suspects)} items")
            error = ErrorInfo("worker", cls, message)
            self.commits.add(
                queue.died(item, error, alone=alone, timed_out=timed_out, policy=self.policy, now=wall),
                item,
                now,
            )
        for item in unstarted:
            self.commits.add(queue.released(item, wall), item, now)
        self.metrics.worker_deaths.labels(reason).inc()
        restart = restart_reason(ready=w.ready, exitcode=code, timed_out=timed_out)
        delay = None
        if not self._draining:
            how = "timed out" if timed_out else describe_exit(code)
            delay = self.workers.restarts.lost(
                w.slot, now=now, running_items=bool(suspects or handed), what=f"{restart}, {how}"
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
            handed=len(handed),
        )
        self.workers.forget(w)
        self.hosts.forget(w.slot)
        self._publish_health(now)
        self._flush(force=True)  # deaths are rare; record them at once

    def _kill_hung(self, now: float) -> None:
        for w in self.workers.live():
            if (w.outstanding or w.settling) and now - w.last_progress > self.settings.item_timeout_seconds:
                w.process.kill()
                self._read_results(w)
                self._on_worker_exit(w, timed_out=True)

    # -- claiming and dispatching ---------------------------------------------------------------

    def _held(self) -> int:
        return len(self._backlog) + sum(len(w.outstanding) for w in self.workers.live())

    def _can_claim(self, now: float) -> bool:
        # Half the budget left: claims stay few and large (each is a write transaction).
        return (
            not self._draining
            and not self._paused
            and not self._flushing
            # One at a time (its end wakes the loop); two while cheap documents stream in, so
            # the store thread goes from one straight to the next (atlas.engine.inline).
            and self._claiming < (2 if self._settling_all else 1)
            and self._held() <= self.budget.capacity(now) // 2
            # Handed documents: the workers settle one claim's worth while the store writes the last.
            and self._handed <= 3 * self.settings.claim_batch_size
        )

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
        room = self.budget.capacity(now) - self._held()
        handoff = self._handing is not None and any(w.ready for w in self.workers.live())
        # Handed documents take none of the budget (they are never leased): the claim may choose
        # a whole batch, and leases at most the room left (its lease limit, below).
        limit = self.settings.claim_batch_size if handoff else min(self.settings.claim_batch_size, room)
        if limit <= 0 or not self.workers.live():
            return
        owner, lease_seconds = self.owner, self.settings.lease_seconds
        self._claiming += 1
        self._work_since_claim = False  # this claim looks after it
        if self.inline is None:
            self.store_thread.submit(
                lambda: self.store.claim(owner, limit, lease_seconds),
                lambda claimed, error: self._claimed(limit, claimed, error),
            )
            return
        settling = self.inline.claim(
            handoff=handoff,
            lease_only=self._lease_only,
            inline_only=self._inline_only,
        )
        # Settled items take none of the budget; leased ones do, and a claim waiting in line
        # behind another cannot know what that one will lease: it leases at most what is left.
        lease_limit = max(0, min(limit, room - self._lease_reserved))
        self._lease_reserved += lease_limit

        def claim_settling() -> ClaimSettled:  # on the store thread
            started = time.perf_counter()
            result = self.store.claim_settling(owner, limit, lease_seconds, settling, lease_limit)
            if result.settled:
                # It committed what it settled: the commit metrics count it as any commit (the
                # database latency alert reads them), less the time spent settling.
                self.metrics.commit_duration.observe(time.perf_counter() - started - settling.seconds)
                self.metrics.commit_batch.observe(len(result.settled))
            return result

        self.store_thread.submit(
            claim_settling,
            lambda result, error: self._claimed_settling(limit, lease_limit, settling, result, error),
        )

    def _claimed_settling(
        self,
        limit: int,
        lease_limit: int,
        settling: Settling,
        result: ClaimSettled | None,
        error: BaseException | None,
    ) -> None:
        """A claim that settled cheap documents at once ended: record those as a commit would,
        then the leased rest as any claim's."""
        self._lease_reserved -= lease_limit
        if result is None:
            if error is not None and not isinstance(error, StoreError) and self.inline is not None:
                # Settling itself failed (a bug, or a document it did not foresee): nothing was
                # written, and the workers, where a failure is an item's and not the engine's,
                # take every item from now on, instead of the engine dying on it again and again.
                log.error(
                    "inline settling failed; the workers take every item from now on",
                    error=f"{type(error).__name__}: {error}",
                )
                self.inline = None
                error = StoreError(f"inline settling failed: {type(error).__name__}: {error}")
            self._claimed(limit, None, error)
            return
        now = self.monotonic()
        self.budget.finished(len(result.settled), now)
        self._settling_all = len(result.settled) == limit
        if self._lease_only:
            self._lease_only.difference_update(i.id for i in result.leased)
        if self._inline_only:
            self._inline_only.difference_update(i.id for _, i in result.settled)
        self._claimed(limit, result.leased, None, chosen=result.chosen)
        if result.handed:
            self._hand_out(list(result.handed))
        # The next claim first: recording a claim's worth of items takes the loop milliseconds,
        # which the store thread would otherwise spend idle (measured: a tenth of the run).
        now = self.monotonic()
        if self._can_claim(now) and now >= self._next_claim:
            self._claim(now)
        stages: dict[str, list[float]] = {}  # observed at once, a stage's values together
        for transition, item in result.settled:
            for stage, seconds in settling.timings(transition).items():
                stages.setdefault(stage, []).append(seconds)
            if transition.outcome in ("retry", "dead"):
                _log_failure(item, transition)
        for stage, values in stages.items():
            observe_many(self._child(self.metrics.stage_duration, stage), values)
        self.commits.record(result.settled, result.applied)

    def _claimed(
        self,
        limit: int,
        claimed: list[Claimed] | None,
        error: BaseException | None,
        chosen: int | None = None,
    ) -> None:
        """The store thread's claim ended: the items join the backlog (or go back when draining).
        `chosen`: how many the claim took, with those settled at once (default: `claimed`)."""
        self._claiming -= 1
        now = self.monotonic()
        if error is not None:
            if not isinstance(error, StoreError):
                raise error
            log.error("claim failed", error=str(error))
            self._next_claim = now + STORE_RETRY_SECONDS
            return
        assert claimed is not None
        if self._draining:  # the drain began while the claim ran: give them back at once
            wall = self.wall()
            for item in claimed:
                self.commits.add(queue.released(item, wall), item, now)
            return
        chosen = len(claimed) if chosen is None else chosen
        if claimed:
            self._backlog.extend(claimed)
        if chosen:
            self.metrics.claim_batch.observe(chosen)
        self.metrics.in_flight.set(self._held())
        # A short claim means nothing more was due when it looked: look again after the poll
        # interval, unless work arrived since it was asked for (it may have looked too early:
        # an item settled at once lets a producer enqueue the next before this callback runs).
        again = chosen == limit or self._work_since_claim
        self._next_claim = now if again else now + self.settings.poll_interval_ms / 1000

    # -- handing documents out (atlas.engine.handoff) ---------------------------------------------

    def _hand_out(self, items: list[Claimed]) -> None:
        """Send a claim's handed documents to the emptiest ready worker, in one batch."""
        assert self._handing is not None
        # Two claims side by side (PostgreSQL's two store threads) may both choose a document the
        # first handed out just before the second read what is handed: it is out once already, and
        # a worker's second copy would be counted in _handed and never taken off.
        out = [w.settling for w in self.workers.live() if w.settling]
        if out:
            items = [i for i in items if not any(i.id in held for held in out)]
            if not items:
                return
        ready = [w for w in self.workers.live() if w.ready]
        if not ready or self._draining:
            self._handing.forget_handed([i.id for i in items])  # still queued: claimed again later
            return
        self._handed += len(items)
        w = min(ready, key=lambda w: len(w.outstanding) + len(w.settling))
        if not w.outstanding and not w.settling:
            w.last_progress = self.monotonic()
        w.settling.update((i.id, i) for i in items)
        w.send(Settle([(i.id, i.payload) for i in items], self._handing.handed_tsvector))

    def _take_back_handed(self, w: Worker) -> list[str]:
        """Forget what `w` was settling (it died, or was killed): still queued, claimed again."""
        handed = list(w.settling)
        if handed:
            assert self._handing is not None
            w.settling.clear()
            self._handing.forget_handed(handed)
            self._handed -= len(handed)
        return handed

    def _on_settled(self, w: Worker, message: Settled) -> None:
        """A worker settled handed documents: write the stored ones, in one transaction on the
        store thread; the rest are settled inline by a later claim (failures and all)."""
        assert self._handing is not None
        handing = self._handing
        now = self.monotonic()
        w.last_progress = now
        self.workers.restarts.finished_item(w.slot)
        unsettled = [i for i in message.unsettled if w.settling.pop(i, None) is not None]
        if unsettled:
            self._inline_only.update(unsettled)
            handing.forget_handed(unsettled)
            self._handed -= len(unsettled)
            self._work_since_claim = True
        for doc in message.stored:
            item = w.settling.pop(doc[0], None)
            if item is not None:
                self._to_write.append((doc, item))
        if not self._writing:
            self._write_settled()

    def _write_settled(self) -> None:
        """Write what the workers settled, in one transaction on the store thread."""
        assert self._handing is not None
        handing, pairs = self._handing, self._to_write
        if not pairs:
            return
        self._to_write, self._writing = [], True

        def write() -> dict[str, str]:  # on the store thread
            started = time.perf_counter()
            applied = handing.settle_handed(
                [d for d, _ in pairs], {i.id: (i.attempts, i.kind) for _, i in pairs}
            )
            self.metrics.commit_duration.observe(time.perf_counter() - started)
            self.metrics.commit_batch.observe(len(pairs))
            return applied

        self.store_thread.submit(write, lambda applied, error: self._settled_written(pairs, applied, error))

    def _settled_written(
        self,
        pairs: list[tuple[SettledDocument, Claimed]],
        applied: dict[str, str] | None,
        error: BaseException | None,
    ) -> None:
        self._handed -= len(pairs)
        self._writing = False
        self._write_settled()  # what gathered meanwhile
        if error is not None:
            if not isinstance(error, StoreError):
                raise error
            # Nothing was written: they are still queued, and the next claims choose them again.
            log.error("writing settled documents failed; they stay queued", error=str(error), n=len(pairs))
            return
        assert applied is not None
        self.budget.finished(len(pairs), self.monotonic())
        written = [(d, i) for d, i in pairs if i.id in applied]
        observe_many(
            self._child(self.metrics.stage_duration, DocumentDecode.name), [d[6] for d, _ in written]
        )
        observe_many(self._child(self.metrics.stage_duration, Normalise.name), [d[7] for d, _ in written])
        self.commits.record_finished([i for _, i in written], applied)
        if len(written) < len(pairs):
            log.info("settled documents another engine took meanwhile; dropped", n=len(pairs) - len(written))

    def _dispatch(self, now: float) -> None:
        if not self._backlog:
            return
        ready = [w for w in self.workers.live() if w.ready]
        batches, self._backlog = assign(self._backlog, ready, self.per_worker, now)
        for w, items in batches:
            w.send(Run([Job.of(i) for i in items], self.leases.deadline))

    # -- health and leases ----------------------------------------------------------------------

    def _note_health(self, now: float) -> bool:
        """Recompute the engine's health; returns True when it is what was last published."""
        health = self.workers.restarts.status(now)
        if health == self._health:
            return True
        if health[0] != self._health[0]:
            log.warning("engine health changed", status=health[0], why=health[1])
        self._health = health
        return False

    def _publish_health(self, now: float) -> None:
        """Write the engine's health into its heartbeat key when it changed (the API reads it)."""
        if not self._note_health(now):
            self.leases.publish(self._health)

    def _heartbeat(self, now: float) -> None:
        self._note_health(now)
        if not self.leases.beat(self._health):
            self._next_heartbeat = now + STORE_RETRY_SECONDS
            return
        self._next_heartbeat = now + self.leases.beat_seconds
        for w in self.workers.live():
            w.send(Extend(self.leases.deadline))

    # -- committing -----------------------------------------------------------------------------

    def _flush(self, force: bool = False) -> None:
        self._flushing = True
        try:
            self.commits.flush(force=force, give_up_at=self._drain_deadline + self.settings.lease_seconds)
        finally:
            self._flushing = False
        self.metrics.in_flight.set(self._held())

    # -- stopping -------------------------------------------------------------------------------

    def _begin_drain(self, now: float) -> None:
        self._draining = True
        # Finish what is running within most of a lease, so no other engine takes it meanwhile.
        self._drain_deadline = now + min(
            self.settings.lease_seconds * 0.8, self.settings.item_timeout_seconds
        )
        wall = self.wall()
        for item in self._backlog:
            self.commits.add(queue.released(item, wall), item, now)
        log.info(
            "draining",
            backlog_released=len(self._backlog),
            running=sum(len(w.outstanding) for w in self.workers.live()),
        )
        self._backlog.clear()

    def _abandon_running(self) -> None:
        now, wall = self.monotonic(), self.wall()
        for w in self.workers.live():
            w.process.kill()
            for item in w.outstanding.values():
                self.commits.add(queue.released(item, wall), item, now)
            w.outstanding.clear()
            self._take_back_handed(w)

    def _shutdown(self) -> None:
        self.workers.stop_all(Stop(), WORKER_STOP_SECONDS)
        self._selector.close()
        self.leases.release_all()
        os.close(self._wake_r)
        os.close(self._wake_w)
