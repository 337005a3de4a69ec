"""Drains the outbox: one worker per channel, each sending up to its channel's concurrency at once.

A worker leases due deliveries (oldest first, one per alert group so a group's messages keep
their order), sends each in its pool, and records the outcome: sent; a transient failure retried
after a capped, full-jitter backoff (or the Retry-After the other side asked for); dead with the
reason on a permanent failure, or after ATLAS_ROUTER_MAX_ATTEMPTS when that is set.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from atlas.alerting.router.channels.base import (
    Channel,
    Deferred,
    Outgoing,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from atlas.alerting.router.payload import parse_notification
from atlas.alerting.router.routing import only
from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.reliability.backoff import full_jitter
from atlas.store.outbox import Delivery, Outbox, Outcome

log = get_logger("atlas.router")
_IDLE_POLL_SECONDS = 1.0  # a worker re-checks the outbox at least this often (retries fall due)
_QUEUED_PER_SLOT = 4


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    max_attempts: int = 0  # 0 = retry transient failures forever


class ChannelWorker:
    """Sends one channel's deliveries until `stop` is set."""

    def __init__(
        self,
        channel: Channel,
        outbox: Outbox,
        tally: Callable[[str, str, float], None],
        retry: RetryPolicy,
        *,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        record: Callable[[Outcome], None] | None = None,
    ) -> None:
        """`tally(channel, outcome, seconds)` counts each attempt (RouterMetrics.tally); `record`
        takes each outcome (a Bookkeeper's submit batches them); by default each is committed on its
        own before the send's slot is freed."""
        self.channel = channel
        self.outbox = outbox
        self.tally = tally
        self.retry = retry
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.rand = rand
        self.record = record or (lambda outcome: outbox.record([outcome]))
        self.wake = threading.Event()
        self._slots = threading.Semaphore(channel.concurrency)
        self._in_flight = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name=f"atlas-router-{self.channel.name}", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(self.channel.concurrency, thread_name_prefix=f"router-{self.channel.name}")
        try:
            # Up to _QUEUED_PER_SLOT deliveries per pool thread are leased ahead, so one claim
            # (a scan of the channel's pending rows) feeds several sends.
            capacity = self.channel.concurrency * _QUEUED_PER_SLOT
            while not stop.is_set():
                self.wake.clear()
                with self._lock:
                    free = capacity - self._in_flight
                    idle = self._in_flight == 0
                batch = []
                if idle or free >= self.channel.concurrency:
                    try:
                        batch = self.outbox.claim(self.channel.name, free, self.clock(), self.lease_seconds)
                    except StoreError as exc:
                        log.error("outbox claim failed", channel=self.channel.name, error=str(exc))
                for delivery in batch:
                    with self._lock:
                        self._in_flight += 1
                    pool.submit(self._deliver, delivery)
                if batch and len(batch) == free:
                    self.wake.wait(_IDLE_POLL_SECONDS)  # full: a finished send wakes us
                elif not batch:
                    self.wake.wait(self._idle_wait() if idle else _IDLE_POLL_SECONDS)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _idle_wait(self) -> float:
        try:
            due = self.outbox.next_due(self.channel.name)
        except StoreError:
            return _IDLE_POLL_SECONDS
        if due is None:
            return _IDLE_POLL_SECONDS
        return min(_IDLE_POLL_SECONDS, max(0.005, due - self.clock()))

    def _deliver(self, d: Delivery) -> None:
        try:
            self._attempt(d)
        except StoreError as exc:
            # The outcome is not recorded: the lease runs out and the delivery is sent again
            # (at-least-once), which is the price of never losing one.
            log.error("outbox update failed", channel=self.channel.name, delivery=d.id, error=str(exc))
        except Exception:  # a bug must not kill the worker; the delivery stays pending
            log.exception("delivery crashed", channel=self.channel.name, delivery=d.id)
        finally:
            with self._lock:
                self._in_flight -= 1
            self.wake.set()

    def _attempt(self, d: Delivery) -> None:
        name = self.channel.name
        notification = only(parse_notification(d.body), d.fingerprints)
        out = Outgoing(d.id, d.notification_id, d.dedupe_key, notification)
        try:
            self.channel.send(out)
        except Deferred as exc:
            self.record(Outcome(d.id, "defer", exc.until))
            return
        except PermanentDeliveryError as exc:
            self._dead(d, str(exc))
            return
        except TransientDeliveryError as exc:
            attempts = d.attempts + 1
            if self.retry.max_attempts and attempts >= self.retry.max_attempts:
                self._dead(d, f"gave up after {attempts} attempts: {exc}")
                return
            delay = exc.retry_after
            if delay is None:
                delay = full_jitter(attempts, self.retry.base_seconds, self.retry.cap_seconds, self.rand)
            self.record(Outcome(d.id, "retry", self.clock() + delay, str(exc)))
            self.tally(name, "failed", 0.0)
            log.warning(
                "delivery failed; will retry", channel=name, delivery=d.id, error=str(exc), delay=delay
            )
            return
        now = self.clock()
        self.record(Outcome(d.id, "sent", now))
        self.tally(name, "sent", now - d.received_at)

    def _dead(self, d: Delivery, reason: str) -> None:
        self.record(Outcome(d.id, "dead", self.clock(), reason))
        self.tally(self.channel.name, "dead", 0.0)
        log.error("delivery dead", channel=self.channel.name, delivery=d.id, reason=reason)
