"""`atlas-ops test load`: drive the ingest API with realistic items and report what became of them.

`concurrent` clients post documents and URLs (pages on the load origin, atlas.ops.origin) for
`duration` seconds, one item per request or `batch` per /v1/items/batch. Every answer is counted:
202 accepted (each acknowledged id is kept), 429/503 shed (the API protecting itself, not an
error), anything else or a transport failure an error. Then the drain: every acknowledged item is
read back until it is final (done, duplicate, dead) or the drain time runs out. An acknowledged
item the API no longer knows is *lost*: the one thing Atlas must never do.

The report: requests, accepted, shed, errors, throughput, request latency p50/p95/p99,
accept-to-done latency (the item's own done_at - created_at), final states, backlog at the end.
It fails when an item is lost or errors pass `error_threshold` (a share of requests).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from atlas.ops.origin import LoadOrigin, article_text

FINAL_STATES = ("done", "duplicate", "dead")
SHED_STATUSES = (429, 503)
DRAIN_POLL_SECONDS = 0.5
PROGRESS_SECONDS = 0.5


@dataclass(frozen=True)
class LoadConfig:
    duration_seconds: float
    concurrent: int
    batch: int = 1
    url_share: float = 0.5  # fraction of items that are URLs (the rest documents); 0 without an origin
    max_requests: int | None = None  # stop earlier after this many requests (bounded test runs)
    drain_seconds: float = 120.0
    error_threshold: float = 0.01
    request_timeout_seconds: float = 30.0

    def check(self) -> None:
        """Raise ValueError naming the bad option."""
        if self.duration_seconds <= 0:
            raise ValueError(f"--duration must be > 0 (got {self.duration_seconds:g})")
        if self.concurrent < 1:
            raise ValueError(f"--concurrent must be >= 1 (got {self.concurrent})")
        if self.batch < 1:
            raise ValueError(f"--batch must be >= 1 (got {self.batch})")
        if not 0 <= self.url_share <= 1:
            raise ValueError(f"--url-share must be within 0..1 (got {self.url_share:g})")
        if not 0 <= self.error_threshold <= 1:
            raise ValueError(f"--error-threshold must be within 0..1 (got {self.error_threshold:g})")


@dataclass
class LoadStats:
    started: float = 0.0  # monotonic
    requests: int = 0
    accepted: int = 0  # items acknowledged (202, with an id)
    rejected: int = 0  # items a 202 batch answered with a per-item error
    shed: int = 0  # requests answered 429/503
    errors: int = 0  # requests answered otherwise, or failed in transport
    latencies: list[float] = field(default_factory=list)
    error_samples: Counter[str] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)

    def rate(self, now: float) -> float:
        return self.accepted / max(now - self.started, 1e-9)


@dataclass
class Drain:
    final: Counter[str] = field(default_factory=Counter)  # state -> items
    accept_to_done: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not final when the drain ended
    states: dict[str, str] = field(default_factory=dict)  # id -> final state


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 by nearest rank (None when there are no values)."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for p in (50, 95, 99):
        out[f"p{p}"] = (
            round(ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))], 6)
            if ordered
            else None
        )
    return out


class LoadDriver:
    """Post items to `target` with `api_key` (ingest and read scopes); see the module docstring."""

    def __init__(
        self,
        target: str,
        api_key: str,
        config: LoadConfig,
        *,
        origin: LoadOrigin | None = None,
        url_hosts: Sequence[str] = ("127.0.0.1",),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.config = config
        self.origin = origin
        self.url_hosts = list(url_hosts)
        self.clock = clock
        self.run_id = uuid.uuid4().hex[:8]  # pages and texts unique to this run: nothing is a duplicate
        self.stats = LoadStats()
        self._numbers = itertools.count()

    def _item(self) -> dict[str, Any]:
        n = next(self._numbers)
        share = self.config.url_share
        if self.origin is not None and int((n + 1) * share) > int(n * share):
            # Evenly spread: a share of 0.5 makes every other item a URL, 0.25 every fourth.
            host = self.url_hosts[n % len(self.url_hosts)]
            return {"url": self.origin.url(host, self.run_id, n), "source": "atlas-ops test load"}
        return {
            "content": article_text(f"doc/{self.run_id}", n),
            "content_type": "text/plain",
            "source": "atlas-ops test load",
        }

    async def _post(self, client: httpx.AsyncClient) -> None:
        stats, batch = self.stats, self.config.batch
        items = [self._item() for _ in range(batch)]
        if batch == 1:
            path, body = "/v1/items", items[0]
        else:
            path, body = "/v1/items/batch", {"items": items}
        began = self.clock()
        try:
            r = await client.post(f"{self.target}{path}", json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            stats.requests += 1
            stats.errors += 1
            stats.error_samples[type(exc).__name__] += 1
            await asyncio.sleep(0.05)  # an API down refuses at once: do not spin on it
            return
        stats.requests += 1
        stats.latencies.append(self.clock() - began)
        if r.status_code == 202:
            data = r.json()
            entries = [data] if batch == 1 else data["results"]
            for entry in entries:
                if entry.get("id"):
                    stats.ids.append(entry["id"])
                    stats.accepted += 1
                else:
                    stats.rejected += 1
                    stats.error_samples[f"item: {entry.get('error', '?')[:80]}"] += 1
        elif r.status_code in SHED_STATUSES:
            stats.shed += 1
        else:
            stats.errors += 1
            stats.error_samples[f"HTTP {r.status_code}"] += 1

    async def drive(
        self,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[LoadStats], None] | None = None,
    ) -> LoadStats:
        """Post for the configured duration (or until `should_stop()` or max_requests)."""
        cfg = self.config
        self.stats.started = self.clock()
        deadline = self.stats.started + cfg.duration_seconds
        budget = itertools.count() if cfg.max_requests is None else iter(range(cfg.max_requests))

        def go_on() -> bool:
            return self.clock() < deadline and not should_stop()

        async def client_loop(client: httpx.AsyncClient) -> None:
            while go_on() and next(budget, None) is not None:
                await self._post(client)

        async def ticker() -> None:
            while on_progress is not None:
                on_progress(self.stats)
                await asyncio.sleep(PROGRESS_SECONDS)

        limits = httpx.Limits(max_connections=cfg.concurrent, max_keepalive_connections=cfg.concurrent)
        async with httpx.AsyncClient(limits=limits, timeout=cfg.request_timeout_seconds) as client:
            tick = asyncio.create_task(ticker())
            try:
                await asyncio.gather(*(client_loop(client) for _ in range(cfg.concurrent)))
            finally:
                tick.cancel()
        if on_progress is not None:
            on_progress(self.stats)
        return self.stats

    async def drain(
        self, timeout: float | None = None, on_progress: Callable[[int, int], None] | None = None
    ) -> Drain:
        """Read every acknowledged item back until it is final or `timeout` passes. Transport
        errors (an API restarting) leave an item pending for the next round."""
        out = Drain()
        pending = list(dict.fromkeys(self.stats.ids))
        deadline = self.clock() + (self.config.drain_seconds if timeout is None else timeout)
        gate = asyncio.Semaphore(self.config.concurrent)
        async with httpx.AsyncClient(timeout=self.config.request_timeout_seconds) as client:

            async def check(item_id: str) -> str | None:
                async with gate:
                    try:
                        r = await client.get(f"{self.target}/v1/items/{item_id}", headers=self.headers)
                    except httpx.HTTPError:
                        return None
                if r.status_code == 404:
                    out.lost.append(item_id)
                    return "lost"
                if r.status_code != 200:
                    return None
                data = r.json()
                if data["state"] not in FINAL_STATES:
                    return None
                out.final[data["state"]] += 1
                out.states[item_id] = data["state"]
                if data.get("done_at") is not None:
                    out.accept_to_done.append(float(data["done_at"]) - float(data["created_at"]))
                return str(data["state"])

            while True:
                answers = await asyncio.gather(*(check(i) for i in pending))
                pending = [i for i, a in zip(pending, answers, strict=True) if a is None]
                if on_progress is not None:
                    on_progress(len(self.stats.ids) - len(pending), len(self.stats.ids))
                if not pending or self.clock() >= deadline:
                    break
                await asyncio.sleep(DRAIN_POLL_SECONDS)
        out.pending = pending
        return out

    def report(self, drain: Drain, elapsed: float) -> dict[str, Any]:
        """The run's figures, the problems found (empty when it passed) and `passed`."""
        s, cfg = self.stats, self.config
        error_rate = s.errors / s.requests if s.requests else 0.0
        problems = []
        if drain.lost:
            problems.append(f"{len(drain.lost)} acknowledged item(s) lost, e.g. {drain.lost[0]}")
        if error_rate > cfg.error_threshold:
            problems.append(
                f"error rate {error_rate:.2%} is over the threshold {cfg.error_threshold:.2%} "
                f"({s.errors} of {s.requests} requests)"
            )
        if s.accepted == 0:
            problems.append("no item was accepted")
        return {
            "target": self.target,
            "duration_seconds": round(elapsed, 3),
            "concurrent": cfg.concurrent,
            "batch": cfg.batch,
            "requests": s.requests,
            "accepted": s.accepted,
            "rejected_items": s.rejected,
            "shed": s.shed,
            "errors": s.errors,
            "error_rate": round(error_rate, 6),
            "error_samples": dict(s.error_samples.most_common(5)),
            "throughput_items_per_second": round(s.accepted / elapsed, 2) if elapsed > 0 else 0.0,
            "request_latency_seconds": percentiles(s.latencies),
            "accept_to_done_seconds": percentiles(drain.accept_to_done),
            "final": dict(drain.final),
            "lost": len(drain.lost),
            "backlog_at_end": len(drain.pending),
            "problems": problems,
            "passed": not problems,
        }


def run_load(
    config: LoadConfig,
    *,
    target: str | None = None,
    api_key: str | None = None,
    urls: bool = True,
    stack_env: dict[str, str] | None = None,
    on_progress: Callable[[LoadStats], None] | None = None,
    on_drain: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a load test and return its report. Without `target` a local stack (atlas.ops.teststack)
    is started for the run and stopped after it. `urls`: also post URLs of a load origin started
    on 127.0.0.1 (the target must be allowed to fetch from it). Raises ValueError for a bad
    config, ServiceError when the local stack does not start."""
    from atlas.ops.teststack import LocalStack

    config.check()
    if target is not None and not api_key:
        raise ValueError("--api-key (or ATLAS_API_KEY) is needed with --target")
    stack = None if target is not None else LocalStack(stack_env).start()
    origin = LoadOrigin().start() if urls else None
    try:
        if stack is not None:
            target, api_key = stack.url, stack.api_key
        assert target is not None and api_key is not None
        driver = LoadDriver(
            target,
            api_key,
            config if urls else LoadConfig(**{**vars(config), "url_share": 0.0}),
            origin=origin,
        )
        began = time.monotonic()
        asyncio.run(driver.drive(on_progress=on_progress))
        elapsed = time.monotonic() - began
        drain = asyncio.run(driver.drain(on_progress=on_drain))
        report = driver.report(drain, elapsed)
        report["local_stack"] = stack is not None
        return report
    finally:
        if origin is not None:
            origin.close()
        if stack is not None:
            stack.stop()
