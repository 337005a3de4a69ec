"""Crash safety of `atlas core` as a real process: SIGKILL, poison items, SIGTERM drain."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from atlas.store.models import DLQFilter, NewItem
from atlas.store.postgres import PostgresStore
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.engine import finished, start_core, wait_for
from tests.helpers.postgres import wipe


def docs(n: int, prefix: str = "document") -> list[NewItem]:
    return [
        NewItem(kind="document", payload={"content": f"{prefix} {i} " + "lorem ipsum " * 80})
        for i in range(n)
    ]


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie; a process that exits between the two reads counts as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def workers_of(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], int]]:
    """(store, extra environment for `atlas core`, kills): SQLite in tmp_path, or the session's
    PostgreSQL database emptied. PostgreSQL gets fewer kills: each costs a process start and a
    lease lapse, and the SQLite run already covers the kill-timing spread."""
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
        yield sqlite, {}, 5
        sqlite.close()
        return
    url = request.getfixturevalue("postgres_url")
    pg = PostgresStore(url, pool_size=2, migrate=True)
    wipe(pg)
    yield pg, {"ATLAS_DATABASE_URL": url, "ATLAS_DB_POOL_SIZE": "4"}, 2
    pg.close()


def test_sigkill_repeatedly_loses_nothing_and_completes_nothing_twice(
    tmp_path: Path, backend: tuple[Any, dict[str, str], int]
) -> None:
    store, backend_env, kill_count = backend
    ids = [r.id for r in store.enqueue(docs(2000))]
    processed_log = tmp_path / "processed.log"
    env = atlas_env(
        tmp_path,
        **backend_env,
        ATLAS_LEASE_SECONDS="2",
        ATLAS_WORKERS="2",
        ATLAS_WORKER_CONCURRENCY="8",
        ATLAS_MAX_LEASE_EXPIRIES="20",
        TEST_STAGE_SLEEP_SECONDS="0.03",
        TEST_PROCESSED_LOG=str(processed_log),
    )
    rng = random.Random(int(os.environ.get("TEST_SEED", "2")))
    kills = 0
    orphans: list[psutil.Process] = []
    while kills < kill_count:
        core = start_core(env, "tests.helpers.pipelines:slow", tmp_path / "core.log")
        before = finished(store)
        # Kill at a random moment once this incarnation has made some progress.
        wait_for(lambda: finished(store) > before, 60, "the restarted engine to make progress")  # noqa: B023
        time.sleep(rng.uniform(0.05, 0.6))
        orphans += workers_of(psutil.Process(core.pid))
        core.send_signal(signal.SIGKILL)
        core.wait(timeout=10)
        kills += 1
    assert finished(store) < 2000, "the kills came too late to interrupt anything"
    core = start_core(env, "tests.helpers.pipelines:slow", tmp_path / "core.log")
    try:
        wait_for(lambda: finished(store) == 2000, 120, "all 2,000 items to reach a final state")
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0

    assert store.counts() == {("done", "document"): 2000}
    completions = store.completions()
    assert set(completions) == set(ids), "an item never completed"
    assert max(completions.values()) == 1, "an item completed twice"
    # The kills really interrupted work: leases ran out and some items were processed again.
    expired = [i for i in ids if any(a.outcome == "lease_expired" for a in store.item_attempts(i))]
    assert expired
    runs = Counter(processed_log.read_text().split())
    assert set(runs) == set(ids)
    # Workers never outlive a killed supervisor.
    wait_for(
        lambda: not any(alive(p) for p in orphans),
        10,
        "orphaned workers to exit",
    )


def test_a_poison_item_is_quarantined_after_two_deaths_while_the_rest_complete(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    items = docs(300)
    items.insert(150, NewItem(kind="document", payload={"content": "POISON pill"}))
    ids = [r.id for r in store.enqueue(items)]
    poison_id = ids[150]
    env = atlas_env(
        tmp_path, ATLAS_WORKERS="2", ATLAS_WORKER_CONCURRENCY="4", TEST_STAGE_SLEEP_SECONDS="0.005"
    )
    core = start_core(env, "tests.helpers.pipelines:poison", tmp_path / "core.log")
    try:
        wait_for(lambda: finished(store) == 301, 120, "all 301 items to finish")
        assert core.poll() is None, "the engine itself crashed"
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0
    poison = store.get_item(poison_id)
    assert poison is not None and (poison.state, poison.dead_reason, poison.deaths) == (
        "dead",
        "quarantined",
        2,
    )
    history = store.item_attempts(poison_id)
    assert [a.outcome for a in history] == ["died", "died"]
    assert "SIGKILL" in (history[-1].message or "") and "alone" in (history[-1].message or "")
    assert store.counts()[("done", "document")] == 300
    assert max(store.completions().values()) == 1


def test_sigterm_drains_in_flight_items_and_exits_zero(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    store.enqueue(docs(3000))
    env = atlas_env(tmp_path, ATLAS_LEASE_SECONDS="5", ATLAS_WORKERS="2", TEST_STAGE_SLEEP_SECONDS="0.05")
    core = start_core(env, "tests.helpers.pipelines:slow", tmp_path / "core.log")
    wait_for(lambda: finished(store) > 50, 60, "the engine to get going")
    core.send_signal(signal.SIGTERM)
    assert core.wait(timeout=30) == 0
    counts = store.counts()
    assert ("leased", "document") not in counts, "a lease was left behind"
    assert counts[("queued", "document")] + counts[("done", "document")] == 3000
    assert all(i.attempts == 0 for i in store.dlq_list(DLQFilter()))  # nothing dead-lettered by the stop
    log = (tmp_path / "core.log").read_text()
    assert '"event": "draining"' in log and '"event": "engine stopped"' in log


def test_sigterm_gives_back_items_that_cannot_finish_before_the_lease_runs_out(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    ids = [r.id for r in store.enqueue(docs(10))]
    # Each item would take ten minutes; the lease is 2 s, so the drain must give them back.
    env = atlas_env(tmp_path, ATLAS_LEASE_SECONDS="2", ATLAS_WORKERS="1", TEST_STAGE_SLEEP_SECONDS="600")
    core = start_core(env, "tests.helpers.pipelines:slow", tmp_path / "core.log")
    wait_for(lambda: ("leased", "document") in store.counts(), 60, "items to be leased")
    core.send_signal(signal.SIGTERM)
    assert core.wait(timeout=30) == 0
    assert store.counts() == {("queued", "document"): 10}
    assert all(store.get_item(i).attempts == 0 for i in ids)  # type: ignore[union-attr]


def test_workers_of_a_frozen_engine_stop_before_its_leases_can_lapse(tmp_path: Path) -> None:
    """SIGSTOP the supervisor: workers still running its items exit before those become claimable."""
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    ids = [r.id for r in store.enqueue(docs(16))]
    # Every item takes far longer than a lease, so the workers are mid-item when the heartbeats stop.
    env = atlas_env(
        tmp_path,
        ATLAS_LEASE_SECONDS="6",
        ATLAS_WORKERS="2",
        ATLAS_WORKER_CONCURRENCY="8",
        TEST_STAGE_SLEEP_SECONDS="600",
        TEST_STARTED_LOG=str(tmp_path / "started.log"),
    )
    core = start_core(env, "tests.helpers.pipelines:slow", tmp_path / "core.log")
    try:
        started = tmp_path / "started.log"
        wait_for(
            lambda: started.exists() and len(started.read_text().splitlines()) >= 8, 60, "items to start"
        )
        core.send_signal(signal.SIGSTOP)
        busy = {int(line.split()[1]) for line in started.read_text().splitlines()}
        workers = [psutil.Process(pid) for pid in busy]
        conn = sqlite3.connect(tmp_path / "atlas.db")
        first_lapse = conn.execute("SELECT min(lease_until) FROM items WHERE state = 'leased'").fetchone()[0]
        conn.close()

        def gone() -> bool:
            return not any(alive(w) for w in workers)

        wait_for(gone, 30, "the frozen engine's workers to exit")
        assert time.time() < first_lapse, "a worker was still running when its item became claimable"
    finally:
        core.send_signal(signal.SIGCONT)
        core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0
    # Nothing was charged to the items: they are back in the queue, unharmed.
    assert all(not w.is_running() for w in workers)
    assert store.counts() == {("queued", "document"): 16}
    assert all(store.get_item(i).deaths == 0 for i in ids)  # type: ignore[union-attr]
    assert store.completions() == {}
    assert '"reason": "lease_lapsed"' in (tmp_path / "core.log").read_text()


def test_sigkill_while_documents_are_settled_inline_loses_nothing_and_completes_nothing_twice(
    tmp_path: Path, backend: tuple[Any, dict[str, str], int]
) -> None:
    """Under the default pipeline plain-text documents are settled by the engine in the claim's
    own transaction (atlas.engine.inline): a SIGKILL at any moment leaves them queued or done,
    never half-stored, never completed twice."""
    store, backend_env, kill_count = backend
    n = 10_000
    ids = [r.id for r in store.enqueue(docs(n, prefix="inline"))]
    env = atlas_env(tmp_path, **backend_env, ATLAS_WORKERS="1")
    rng = random.Random(int(os.environ.get("TEST_SEED", "3")))
    pipeline = "atlas.pipeline:default_pipeline"
    for _ in range(kill_count):
        core = start_core(env, pipeline, tmp_path / "core.log")
        # Kill once this incarnation has settled a random share (up to ~5 claims): the engine keeps
        # settling while the poll sees it, so the kill lands at a random point of some claim.
        target = finished(store) + rng.randint(1, 1200)
        wait_for(lambda: finished(store) >= target, 60, "the restarted engine to make progress")  # noqa: B023
        core.send_signal(signal.SIGKILL)
        core.wait(timeout=10)
    assert finished(store) < n, "the kills came too late to interrupt anything"
    core = start_core(env, pipeline, tmp_path / "core.log")
    try:
        wait_for(lambda: finished(store) == n, 120, "every document to reach a final state")
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0
    assert store.counts() == {("done", "document"): n}
    completions = store.completions()
    assert set(completions) == set(ids) and max(completions.values()) == 1
    assert all(store.get_content(i) is not None for i in rng.sample(ids, 50))
    assert len(store.search("inline", limit=n + 1)[0]) == n  # every text indexed once
