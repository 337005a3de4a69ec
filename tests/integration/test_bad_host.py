"""One failing host among ten: the others keep their throughput, its breaker opens and recovers,
and its items wait without spending attempts. Throughput is compared as a ratio of two runs in
this test (with and without the bad host) and printed; the test asserts what must hold: good hosts'
items done on their first attempt while the bad host's wait, the breaker's transitions, no wasted attempts."""

from __future__ import annotations

import time
from pathlib import Path

from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, wait_for
from tests.helpers.origin import Origin, running_origin

WEB = "tests.helpers.pipelines:web"
GOOD_HOSTS = [f"h{i}.test" for i in range(9)]
BAD = "h9.test"
PER_HOST = 40


def states(store: SQLiteStore, ids: list[str]) -> list[str]:
    return [store.get_item(i).state for i in ids]  # type: ignore[union-attr]


def closed(engine: object) -> float:
    registry = engine.metrics.registry  # type: ignore[attr-defined]
    value = registry.get_sample_value("atlas_host_breaker_transitions_total", {"host": BAD, "to": "closed"})
    return float(value or 0)


def run(
    settings: Settings, path: Path, origin: Origin, with_bad: bool
) -> tuple[float, SQLiteStore, list[str], object]:
    """Seconds for every good host's items to finish; the store, the bad host's item ids, the engine."""
    store = SQLiteStore(path, synchronous="NORMAL")
    hosts = GOOD_HOSTS + ([BAD] if with_bad else [])
    items = [
        NewItem(kind="url", payload={"url": origin.url(h, f"/article/{n}")})
        for n in range(PER_HOST)
        for h in hosts
    ]
    with engine_thread(settings, store, WEB) as engine:
        registry = engine.metrics.registry  # type: ignore[attr-defined]
        wait_for(lambda: registry.get_sample_value("atlas_engine_workers") == 1, 30, "the worker")
        started = time.monotonic()
        ids = [r.id for r in store.enqueue(items)]
        good = [i for i, it in zip(ids, items, strict=True) if BAD not in it.payload["url"]]
        bad = [i for i in ids if i not in set(good)]
        wait_for(lambda: all(s == "done" for s in states(store, good)), 120, "the good hosts' items")
        elapsed = time.monotonic() - started
        if with_bad:
            assert all(s == "queued" or s == "leased" for s in states(store, bad)), (
                "bad host items went somewhere"
            )
            # The good hosts never paid for the bad one: every item done on its first attempt.
            assert all(store.get_item(i).attempts == 1 for i in good)  # type: ignore[union-attr]
            origin.failing.clear()  # the host recovers: after a cool-down the breaker lets probes through
            wait_for(
                lambda: all(s == "done" for s in states(store, bad)), 120, "the bad host's items to recover"
            )
            # The worker reports its gates about once a second: wait for the report after recovery.
            wait_for(lambda: closed(engine) >= 1, 30, "the breaker of the bad host to be reported closed")
    return elapsed, store, bad, engine


def test_one_failing_host_among_ten(settings: Settings, tmp_path: Path) -> None:
    web = settings.replace(
        workers=1,  # one process: one breaker per host (each worker process keeps its own)
        worker_concurrency=16,
        poll_interval_ms=10,
        max_attempts=6,
        backoff_base_seconds=0.2,
        backoff_cap_seconds=1.0,
        fetch_allow_hosts=("127.0.0.1",),
        host_rate_per_second=1000,
        host_rate_burst=1000,
        breaker_min_calls=5,
        breaker_window_seconds=10,
        breaker_failure_rate=0.5,
        breaker_cooldown_seconds=0.5,
        breaker_max_cooldown_seconds=2.0,
    )
    with running_origin() as origin:
        origin.latency_seconds = 0.02
        # Baseline runs before and after (A-B-A) so a machine that slows down or warms up during
        # the test does not count for or against the bad host.
        first, store_a, _, _ = run(web, tmp_path / "a.db", origin, with_bad=False)
        origin.failing.add(BAD)
        hits_before = origin.hits[BAD]
        with_bad, store_b, bad_ids, engine = run(web, tmp_path / "b.db", origin, with_bad=True)
        hits_after = origin.hits[BAD]
        second, store_c, _, _ = run(web, tmp_path / "c.db", origin, with_bad=False)
    baseline = (first + second) / 2
    ratio = baseline / with_bad
    # Printed, not asserted: a ratio of two timings swings with the machine's load (0.64 seen with
    # eight test suites sharing two cores). What must hold is asserted above and below.
    print(f"good-host throughput with the bad host / without: {ratio:.3f}")

    bad_items = [store_b.get_item(i) for i in bad_ids]
    assert all(i is not None and i.state == "done" for i in bad_items)  # recovered, none dead-lettered
    attempts = sum(i.attempts for i in bad_items if i is not None)
    calls = hits_after - hits_before
    # Every attempt spent was a real call to the host; waiting on the open breaker spent none.
    assert attempts == calls, (attempts, calls)
    failed_calls = calls - len(bad_ids)  # each item's last call succeeded
    print(f"bad host: {calls} calls, {failed_calls} failed, for {len(bad_ids)} items")
    assert failed_calls < PER_HOST // 2, f"{failed_calls} failed calls: the breaker did not stop the traffic"
    registry = engine.metrics.registry  # type: ignore[attr-defined]
    assert (registry.get_sample_value("atlas_engine_deferred_total", {"kind": "url"}) or 0) > 0
    # The supervisor's per-host metrics, reported by the worker: the breaker opened, later closed.
    opened = registry.get_sample_value("atlas_host_breaker_transitions_total", {"host": BAD, "to": "open"})
    closed = registry.get_sample_value("atlas_host_breaker_transitions_total", {"host": BAD, "to": "closed"})
    assert (opened or 0) >= 1 and (closed or 0) >= 1, (opened, closed)
    assert not any(
        registry.get_sample_value("atlas_host_breaker_transitions_total", {"host": h, "to": "open"})
        for h in GOOD_HOSTS
    )
    history = [a for i in bad_ids for a in store_b.item_attempts(i)]
    assert all(a.outcome == "retry" and a.host == BAD for a in history)
    store_a.close()
    store_c.close()
    store_b.close()
