"""The engine's claims and commits on its store thread (atlas.engine.storethread): the loop goes on
while a commit runs, and a commit that fails or is still running at a drain loses nothing.

The store is the real SQLite store, wrapped to hold or fail `apply` (the commit)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from atlas.errors import StoreError
from atlas.settings import Settings
from atlas.store.models import Claimed, NewItem, Transition
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, finished, wait_for

PIPELINE = "atlas.pipeline:default_pipeline"
ITEMS = 16  # one claim's worth at start (the budget: 2 workers x 4 running, twice)


class HeldStore(SQLiteStore):
    """The real store; its first commit waits for `unblock` (a slow disk, a lock held by a
    backup), or, with `fail_first`, raises StoreError before writing anything."""

    def __init__(self, path: Path, *, fail_first: bool = False, hold_claim: bool = False) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.fail_first, self.hold_claim = fail_first, hold_claim
        self.entered = threading.Event()
        self.unblock = threading.Event()
        self.calls = 0

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        if self.hold_claim:  # the first claim: wait, then take what is queued
            self.hold_claim = False
            self.entered.set()
            self.unblock.wait(timeout=60)
        return super().claim(owner, limit, lease_seconds)

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        self.calls += 1
        if self.calls == 1 and not self.entered.is_set():
            self.entered.set()
            if self.fail_first:
                raise StoreError("database write failed: disk I/O error (injected)")
            self.unblock.wait(timeout=60)
        return super().apply(transitions)


def each_committed_once(store: HeldStore, engine: object) -> None:
    """Every item completed exactly once and counted once; closes the store."""
    assert set(store.completions().values()) == {1} and len(store.completions()) == ITEMS
    assert processed(engine) == ITEMS
    store.close()


def fast(settings: Settings) -> Settings:
    # Every document through the workers and a commit of their results (no inline settling,
    # atlas.engine.inline): those commits are what these tests hold and fail.
    return settings.replace(
        workers=2, worker_concurrency=4, poll_interval_ms=10, lease_seconds=10, inline_document_max_chars=0
    )


def documents(n: int) -> list[NewItem]:
    return [NewItem(kind="document", payload={"content": f"document {i}"}) for i in range(n)]


def processed(engine: object) -> float:
    value = engine.metrics.registry.get_sample_value(  # type: ignore[attr-defined]
        "atlas_engine_items_processed_total", {"kind": "document", "outcome": "done"}
    )
    return value or 0.0


def test_the_loop_turns_while_a_commit_is_held_and_a_drain_then_commits_everything_once(
    settings: Settings, tmp_path: Path
) -> None:
    store = HeldStore(tmp_path / "held.db")
    store.enqueue(documents(ITEMS))
    turns = [0]
    with engine_thread(fast(settings), store, PIPELINE) as engine:

        def on_turn() -> None:
            turns[0] += 1

        engine.on_turn = on_turn  # the systemd watchdog's liveness signal
        assert store.entered.wait(timeout=60), "the first commit never started"
        seen = turns[0]
        # The loop runs at least once a second (its longest wait): with the commit on the loop's
        # own thread, it stopped here until the commit ended, and the watchdog would kill it.
        wait_for(lambda: turns[0] >= seen + 3, 30, "the loop to turn while the commit is held")
        engine.stop()  # the drain begins while the commit still runs
        store.unblock.set()
    assert finished(store) == ITEMS
    each_committed_once(store, engine)


def test_a_commit_that_fails_keeps_its_transitions_and_they_commit_once_on_retry(
    settings: Settings, tmp_path: Path
) -> None:
    store = HeldStore(tmp_path / "failing.db", fail_first=True)
    store.enqueue(documents(ITEMS))
    with engine_thread(fast(settings), store, PIPELINE) as engine:
        wait_for(lambda: finished(store) == ITEMS, 60, f"{ITEMS} items to finish")
    assert store.calls >= 2
    each_committed_once(store, engine)


def test_items_a_claim_returns_after_the_drain_began_go_back_untouched(
    settings: Settings, tmp_path: Path
) -> None:
    store = HeldStore(tmp_path / "late-claim.db", hold_claim=True)
    store.enqueue(documents(ITEMS))
    with engine_thread(fast(settings), store, PIPELINE) as engine:
        assert store.entered.wait(timeout=60), "the first claim never started"
        engine.stop()
        wait_for(lambda: engine._draining, 30, "the drain to begin")
        store.unblock.set()  # the claim now takes every item, after the drain began
    # Given back at once, not run: queued again, no attempt spent, no lease left.
    assert store.counts() == {("queued", "document"): ITEMS}
    assert all(item.attempts == 0 and item.state == "queued" for item in store.list_items(limit=100))
    store.close()
