"""`atlas-ops test failover`: break a running Atlas under load and check that nothing was lost.

A local stack (atlas.ops.teststack: api and core as separate processes under the local supervisor)
takes load (atlas.ops.loadtest) from a background thread, documents and URLs on two origin hosts
(`127.0.0.1` and `localhost`), while this module, in order:

1. SIGKILLs the engine's process group (the engine and its workers, as systemd's control-group
   kill does) and starts it again: leases the dead engine held expire and are taken back;
2. SIGKILLs the API and starts it again: clients see refused connections, then 202s again;
3. makes the origin answer 500 for `localhost` until that host's circuit breaker opens (read from
   the engine's /metrics), then heals it and waits for the breaker to close again.

Then the load stops, every acknowledged item is read back, and the checks are made, each PASS or
FAIL: the restarts happened, every acknowledged item is stored and final (done or duplicate),
the breaker opened and recovered, and no item reached a final state twice (the completions
journal holds one row per item). The phases come after one another so the breaker's counters
(in the engine's registry) are not wiped by the engine's own restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from atlas.ops.loadtest import LoadConfig, LoadDriver
from atlas.ops.origin import LoadOrigin
from atlas.ops.services import wait_until
from atlas.ops.teststack import LocalStack
from atlas.store import open_store

FAILING_HOST = "localhost"
HEALTHY_HOST = "127.0.0.1"
# Short breaker, retry and lease timings so a run takes seconds; the failure paths are the same.
STACK_ENV = {
    "ATLAS_BREAKER_MIN_CALLS": "3",
    "ATLAS_BREAKER_WINDOW_SECONDS": "10",
    "ATLAS_BREAKER_COOLDOWN_SECONDS": "1",
    "ATLAS_BREAKER_MAX_COOLDOWN_SECONDS": "2",
    "ATLAS_BACKOFF_BASE_SECONDS": "0.2",
    "ATLAS_BACKOFF_CAP_SECONDS": "1",
    "ATLAS_MAX_ATTEMPTS": "50",
    "ATLAS_LEASE_SECONDS": "5",
}


@dataclass(frozen=True)
class FailoverConfig:
    concurrent: int = 4
    phase_timeout_seconds: float = 60.0  # how long one phase may wait for what it waits for
    drain_seconds: float = 120.0
    warmup_items: int = 20  # acknowledged items before the first fault


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "result": "PASS" if self.passed else "FAIL", "detail": self.detail}


def breaker_transitions(metrics_url: str, host: str) -> dict[str, float]:
    """{state entered: count} of `host`'s breaker from the engine's /metrics ({} when unreachable)."""
    try:
        text = httpx.get(metrics_url, timeout=2.0).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "atlas_host_breaker_transitions":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("host") == host:
                out[sample.labels["to"]] = sample.value
    return out


def breaker_state(metrics_url: str, host: str) -> float | None:
    try:
        text = httpx.get(metrics_url, timeout=2.0).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "atlas_host_breaker_state":
            for sample in family.samples:
                if sample.labels.get("host") == host:
                    return float(sample.value)
    return None


class Failover:
    def __init__(
        self,
        config: FailoverConfig,
        stack_env: dict[str, str] | None = None,
        on_event: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.config = config
        self.stack = LocalStack(STACK_ENV | (stack_env or {}))
        self.origin = LoadOrigin()
        self.say = on_event
        self.checks: list[Check] = []

    def _kill_and_restart(self, name: str, driver: LoadDriver) -> None:
        sup, timeout = self.stack.supervisor, self.config.phase_timeout_seconds
        before = sup.status(name).pid
        assert before is not None
        self.say(f"SIGKILL {name} (pid {before})")
        os.killpg(before, signal.SIGKILL)  # its session: an engine's workers die with it
        died = wait_until(lambda: sup.status(name).state == "failed", timeout)
        self.say(f"starting {name} again")
        after = sup.start(name).pid
        mark = driver.stats.accepted
        resumed = wait_until(lambda: driver.stats.accepted > mark, timeout)
        self.checks.append(
            Check(
                f"{name} killed and restarted",
                died and after not in (None, before) and resumed,
                f"pid {before} -> {after}; load {'resumed' if resumed else 'did not resume'}",
            )
        )

    def _breaker(self) -> None:
        url, timeout = self.stack.core_metrics_url, self.config.phase_timeout_seconds
        self.say(f"origin fails for {FAILING_HOST}")
        with self.origin.lock:
            self.origin.failing.add(FAILING_HOST)
        opened = wait_until(lambda: breaker_transitions(url, FAILING_HOST).get("open", 0) > 0, timeout)
        self.checks.append(
            Check(
                "breaker opened",
                opened,
                f"{FAILING_HOST}: transitions {breaker_transitions(url, FAILING_HOST)}",
            )
        )
        self.say(f"origin heals {FAILING_HOST}")
        with self.origin.lock:
            self.origin.failing.discard(FAILING_HOST)
        recovered = wait_until(
            lambda: (
                breaker_transitions(url, FAILING_HOST).get("closed", 0) > 0
                and breaker_state(url, FAILING_HOST) == 0
            ),
            timeout,
        )
        self.checks.append(
            Check(
                "breaker recovered",
                opened and recovered,
                f"{FAILING_HOST}: state {breaker_state(url, FAILING_HOST)}, "
                f"transitions {breaker_transitions(url, FAILING_HOST)}",
            )
        )

    def _final_checks(self, driver: LoadDriver) -> None:
        self.say("load stopped; reading every acknowledged item back")
        drain = asyncio.run(driver.drain(timeout=self.config.drain_seconds))
        acked = list(dict.fromkeys(driver.stats.ids))
        stored = [i for i in acked if drain.states.get(i) in ("done", "duplicate")]
        self.checks.append(
            Check(
                "acknowledged items stored and final",
                bool(acked) and len(stored) == len(acked),
                f"{len(stored)}/{len(acked)} done or duplicate; lost {len(drain.lost)}; "
                f"not final {len(drain.pending)}; states {dict(drain.final)}",
            )
        )
        store = open_store(self.stack.settings, migrate=False)
        try:
            completions = store.completions()
        finally:
            store.close()
        twice = sorted(i for i, n in completions.items() if n > 1)
        self.checks.append(
            Check(
                "nothing processed twice",
                not twice and all(completions.get(i) == 1 for i in stored),
                f"{len(completions)} items finished; finished more than once: {twice[:5] or 'none'}",
            )
        )

    def run(self) -> dict[str, Any]:
        """Run every phase; returns {"checks": [...], "passed", "load": {...}}. Raises ServiceError
        when the stack does not start."""
        cfg = self.config
        load_cfg = LoadConfig(duration_seconds=24 * 3600, concurrent=cfg.concurrent, error_threshold=1.0)
        began = time.monotonic()
        with self.stack, self.origin:
            driver = LoadDriver(
                self.stack.url,
                self.stack.api_key,
                load_cfg,
                origin=self.origin,
                url_hosts=(HEALTHY_HOST, FAILING_HOST),
            )
            stop = threading.Event()
            load = threading.Thread(
                target=lambda: asyncio.run(driver.drive(should_stop=stop.is_set)), name="failover-load"
            )
            load.start()
            try:
                self.say("load running")
                wait_until(lambda: driver.stats.accepted >= cfg.warmup_items, cfg.phase_timeout_seconds)
                self._kill_and_restart("core", driver)
                self._kill_and_restart("api", driver)
                self._breaker()
            finally:
                stop.set()
                load.join()
            self._final_checks(driver)
        s = driver.stats
        return {
            "checks": [c.as_dict() for c in self.checks],
            "passed": all(c.passed for c in self.checks),
            "duration_seconds": round(time.monotonic() - began, 1),
            "load": {"requests": s.requests, "accepted": s.accepted, "shed": s.shed, "errors": s.errors},
        }
