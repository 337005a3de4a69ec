"""The engine with real worker processes, on a real SQLite file and on a real PostgreSQL database."""

from __future__ import annotations

from typing import Any

import pytest

from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, finished, wait_for


def doc(text: str) -> NewItem:
    return NewItem(kind="document", payload={"content": text, "content_type": "text/plain"})


@pytest.fixture
def store(any_store: SQLiteStore) -> SQLiteStore:
    """Every test here runs on both backends (`any_store`)."""
    return any_store


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.replace(
        workers=2,
        worker_concurrency=4,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
        max_attempts=3,
        poll_interval_ms=10,
        lease_seconds=10,
    )


def sample(engine: object, name: str, labels: dict[str, str]) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value or 0.0


def test_documents_are_stored_once_and_duplicates_point_at_the_original(
    fast: Settings, store: SQLiteStore
) -> None:
    ids = [
        r.id
        for r in store.enqueue(
            [doc(f"document number {i}") for i in range(90)]
            + [doc(f"document   number {i}\n") for i in range(10)]
        )
    ]
    with engine_thread(fast, store, "atlas.pipeline:default_pipeline") as engine:
        wait_for(lambda: finished(store) == 100, 60, "100 items to finish")
    counts = store.counts()
    assert counts == {("done", "document"): 90, ("duplicate", "document"): 10}
    assert set(store.completions().values()) == {1} and len(store.completions()) == 100
    # Workers process concurrently, so either copy of a pair may be stored first; the
    # other must point at it, and the stored text is the normalised one either way.
    for i in range(10):
        first, second = store.get_item(ids[i]), store.get_item(ids[90 + i])
        assert first is not None and second is not None
        original, dup = (first, second) if second.state == "duplicate" else (second, first)
        assert original.state == "done" and dup.state == "duplicate"
        assert dup.duplicate_of == original.id
        content = store.get_content(original.id)
        assert content is not None and content["text"] == f"document number {i}"
    assert sample(engine, "atlas_engine_items_processed_total", {"kind": "document", "outcome": "done"}) == 90
    assert (
        sample(engine, "atlas_engine_items_processed_total", {"kind": "document", "outcome": "duplicate"})
        == 10
    )
    assert sample(engine, "atlas_engine_accept_to_done_seconds_count", {"kind": "document"}) == 100
    assert sample(engine, "atlas_engine_stage_duration_seconds_count", {"stage": "normalise"}) == 100


def test_transient_failures_retry_with_backoff_and_permanent_ones_dead_letter(
    fast: Settings, store: SQLiteStore
) -> None:
    ok, flaky, doomed, fatal = (
        r.id
        for r in store.enqueue([doc("fine"), doc("FAIL2 then fine"), doc("FAIL5 never fine"), doc("FATAL")])
    )
    with engine_thread(fast, store, "tests.helpers.pipelines:flaky") as engine:
        wait_for(lambda: finished(store) == 4, 60, "4 items to finish")
    states = {i: store.get_item(i) for i in (ok, flaky, doomed, fatal)}
    assert states[ok].state == "done" and states[ok].attempts == 1  # type: ignore[union-attr]
    assert (states[flaky].state, states[flaky].attempts) == ("done", 3)  # type: ignore[union-attr]
    assert [a.outcome for a in store.item_attempts(flaky)] == ["retry", "retry"]
    assert (states[doomed].state, states[doomed].dead_reason) == ("dead", "max_attempts")  # type: ignore[union-attr]
    history = store.item_attempts(doomed)
    assert [(a.attempt, a.outcome, a.stage, a.error_class, a.host) for a in history] == [
        (1, "retry", "flaky", "StageError", "origin.test"),
        (2, "retry", "flaky", "StageError", "origin.test"),
        (3, "dead", "flaky", "StageError", "origin.test"),
    ]
    assert (states[fatal].state, states[fatal].dead_reason, states[fatal].attempts) == (  # type: ignore[union-attr]
        "dead",
        "permanent",
        1,
    )
    assert sample(engine, "atlas_engine_retries_total", {"kind": "document"}) == 4
    assert (
        sample(engine, "atlas_engine_dead_lettered_total", {"kind": "document", "reason": "max_attempts"})
        == 1
    )


def test_a_hung_worker_is_killed_and_the_item_quarantined_after_two_timeouts(
    fast: Settings, store: SQLiteStore
) -> None:
    settings = fast.replace(item_timeout_seconds=1.0)
    ids = [r.id for r in store.enqueue([doc(f"ordinary {i}") for i in range(40)] + [doc("HANG forever")])]
    with engine_thread(settings, store, "tests.helpers.pipelines:hang") as engine:
        wait_for(lambda: finished(store) == 41, 90, "all 41 items to finish")
    hung = store.get_item(ids[-1])
    assert hung is not None and (hung.state, hung.dead_reason) == ("dead", "quarantined")
    outcomes = [a.outcome for a in store.item_attempts(ids[-1])]
    assert outcomes.count("timeout") >= 2 and outcomes[-1] == "timeout"
    assert store.counts()[("done", "document")] == 40
    assert sample(engine, "atlas_engine_worker_deaths_total", {"reason": "timeout"}) >= 2


def test_an_idle_engine_on_postgres_claims_a_new_item_when_notified_not_at_its_next_poll(
    fast: Settings, postgres_url: str
) -> None:
    """LISTEN/NOTIFY: with the poll interval at its maximum (60 s), an item enqueued while the engine
    idles is still finished well inside the 30 s bound, because the enqueue wakes the engine."""
    from atlas.store.postgres import PostgresStore
    from tests.helpers.postgres import wipe

    pg = PostgresStore(postgres_url, pool_size=4)
    wipe(pg)
    try:
        with engine_thread(
            fast.replace(poll_interval_ms=60_000, workers=1), pg, "atlas.pipeline:default_pipeline"
        ):
            pg.enqueue([doc("the first, claimed at start")])
            wait_for(lambda: finished(pg) == 1, 30, "the first item")
            # Idle now: the claim that found nothing more put the next poll 60 s away.
            pg.enqueue([doc("the second, enqueued while the engine idles")])
            wait_for(lambda: finished(pg) == 2, 30, "the second item (woken by NOTIFY)")
    finally:
        pg.close()


def test_two_engines_on_postgres_share_a_backlog_each_holding_no_more_than_its_workers_can_run(
    fast: Settings, postgres_url: str
) -> None:
    """Claim hoarding: an engine holds (claimed, not finished) what its workers run at once plus a
    prefetch, never a whole claim batch (256 by default), so two engines woken by
    the same enqueue both get work. What each holds is read at the top of every turn of its loop
    (its in-flight gauge, set right after each claim), so no peak is missed."""
    from atlas.store.models import HEARTBEAT_KEY_PREFIX
    from atlas.store.postgres import PostgresStore
    from tests.helpers.postgres import wipe

    # No prefetch by rate (atlas.engine.budget, unit-tested): the floor, one more item per slot.
    settings = fast.replace(workers=1, worker_concurrency=4, claim_prefetch_seconds=0)
    bound = 2 * settings.worker_count * settings.worker_concurrency
    first, second = (PostgresStore(postgres_url, pool_size=4) for _ in range(2))
    wipe(first)
    peak: dict[str, float] = {}

    def watch(engine: Any) -> None:
        def on_turn() -> None:
            held = engine.metrics.registry.get_sample_value("atlas_engine_in_flight") or 0.0
            peak[engine.owner] = max(peak.get(engine.owner, 0.0), held)

        engine.on_turn = on_turn

    try:
        with (
            engine_thread(settings, first, "tests.helpers.pipelines:slow") as a,
            engine_thread(settings, second, "tests.helpers.pipelines:slow") as b,
        ):
            watch(a)
            watch(b)
            # Both loops run (each beat once), so both are subscribed to the enqueue's NOTIFY.
            wait_for(
                lambda: all(first.kv_get(HEARTBEAT_KEY_PREFIX + e.owner) for e in (a, b)),
                30,
                "both engines' first heartbeat",
            )
            first.enqueue([doc(f"backlog item {i}") for i in range(120)])
            wait_for(lambda: finished(first) == 120, 60, "the backlog to finish")
        assert 0 < max(peak.values()) <= bound, (peak, bound)
        for engine in (a, b):
            done = {"kind": "document", "outcome": "done"}
            assert sample(engine, "atlas_engine_items_processed_total", done) > 0, engine.owner
        assert first.counts() == {("done", "document"): 120}
    finally:
        first.close()
        second.close()
