"""Cheap documents handed to the workers, unleased, and written conditionally (issue 18).

On SQLite, a claim hands the documents it would settle inline out instead (HANDOFF): they stay
queued and unleased, out of this process's next claims; a worker settles a whole claim's worth in
one message, and Store.settle_handed writes each result only if its row is as it was handed.
Through the store: what is handed, skipped, forgotten and written, and a result dropped because
another engine took its item meanwhile. Through a real engine: every document ends once, the ones
a worker cannot store are settled inline (failures and all), and a worker killed while settling
loses nothing, its documents going through a lease next.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from atlas.engine import queue
from atlas.engine.handoff import settle_plain
from atlas.settings import Settings
from atlas.store.models import HANDOFF, ErrorInfo, NewItem, SettledDocument
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, finished, wait_for
from tests.helpers.stores import sql_rows

PIPELINE = "atlas.pipeline:default_pipeline"


def _hand_all(store: SQLiteStore, limit: int = 10) -> Any:
    return store.claim_settling("owner-1", limit, 30, lambda item: HANDOFF)


def _settled(items: Any) -> list[SettledDocument]:
    docs = [settle_plain(i.id, i.payload) for i in items]
    assert all(d is not None for d in docs)
    return [d for d in docs if d is not None]


def test_a_handed_document_stays_queued_unleased_and_out_of_this_stores_claims(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL")
    ids = [
        r.id
        for r in store.enqueue([NewItem(kind="document", payload={"content": f"t{i}"}) for i in range(3)])
    ]
    result = _hand_all(store)
    assert [i.id for i in result.handed] == ids and not result.leased and not result.settled
    assert sql_rows(store, "SELECT state, lease_owner, attempts FROM items") == [("queued", None, 0)] * 3
    assert _hand_all(store).chosen == 0  # skipped while handed
    # Another process's store does not know what this one handed: it may choose them.
    other = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL")
    assert other.claim_settling("owner-2", 10, 30, lambda item: None).chosen == 3
    other.release("owner-2")
    store.forget_handed([ids[1]])
    assert [i.id for i in _hand_all(store).handed] == [ids[1]]
    other.close()
    store.close()


def test_settle_handed_stores_each_text_once_and_counts_what_it_moved(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL")
    texts = ["alpha beta", "gamma delta", "alpha beta"]  # the third repeats the first
    ids = [r.id for r in store.enqueue([NewItem(kind="document", payload={"content": t}) for t in texts])]
    handed = _hand_all(store).handed
    applied = store.settle_handed(_settled(handed), {i.id: (i.attempts, i.kind) for i in handed})
    assert applied == {ids[0]: "done", ids[1]: "done", ids[2]: "duplicate"}
    rows = sql_rows(
        store, "SELECT id, state, attempts, duplicate_of, lease_token, done_at IS NOT NULL FROM items"
    )
    assert sorted(rows) == sorted(
        [
            (ids[0], "done", 1, None, None, 1),
            (ids[1], "done", 1, None, None, 1),
            (ids[2], "duplicate", 1, ids[0], None, 1),
        ]
    )
    assert sorted(sql_rows(store, "SELECT item_id, outcome, lease_token FROM completions")) == sorted(
        [(ids[0], "done", None), (ids[1], "done", None), (ids[2], "duplicate", None)]
    )
    hits, _ = store.search("alpha", limit=10)
    assert [h.item_id for h in hits] == [ids[0]]
    counts = store.counts()
    assert counts.get(("done", "document")) == 2 and counts.get(("duplicate", "document")) == 1
    assert counts.get(("queued", "document"), 0) == 0
    store.recount_items()  # the counters the statements kept are the ones the rows give
    assert store.counts() == counts
    assert _hand_all(store).chosen == 0  # nothing left, and nothing still handed
    store.close()


def test_settle_handed_stores_a_title_and_url_when_the_document_has_them(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL")
    payloads = [
        {"content": "# A Title\n\nsome body", "content_type": "text/markdown", "url": "https://x.test/a"},
        {"content": "plain words"},  # in the same write: every content row with all its columns
    ]
    ids = [r.id for r in store.enqueue([NewItem(kind="document", payload=p) for p in payloads])]
    handed = _hand_all(store).handed
    applied = store.settle_handed(_settled(handed), {i.id: (i.attempts, i.kind) for i in handed})
    assert applied == {ids[0]: "done", ids[1]: "done"}
    titled = store.get_content(ids[0])
    assert titled is not None and titled["title"] == "A Title" and titled["url"] == "https://x.test/a"
    assert titled["content_type"] == "text/markdown"
    plain = store.get_content(ids[1])
    assert plain is not None and plain["title"] is None and plain["text"] == "plain words"
    hits, _ = store.search("title", limit=10)
    assert [h.item_id for h in hits] == [ids[0]]
    store.close()


def test_a_result_for_a_document_another_engine_took_meanwhile_is_dropped(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL")
    other = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL")  # a second engine's store
    taken, retried, untouched = (
        r.id
        for r in store.enqueue([NewItem(kind="document", payload={"content": f"text {i}"}) for i in range(3)])
    )
    handed = _hand_all(store).handed
    # Meanwhile the other engine leases all three: one it still holds, one failed once and is
    # queued again (one more attempt), one it gives back untouched.
    leased = {c.id: c for c in other.claim("owner-2", 10, 30)}
    error = ErrorInfo("fetch", "Boom", "once")
    policy = queue.RetryPolicy(max_attempts=5, backoff_base_seconds=0, backoff_cap_seconds=0, max_deaths=2)
    other.apply(
        [
            queue.failed(leased[retried], error, permanent=False, policy=policy, now=0.0, rand=lambda: 0.0),
            queue.released(leased[untouched], 0.0),
        ]
    )
    applied = store.settle_handed(_settled(handed), {i.id: (i.attempts, i.kind) for i in handed})
    assert applied == {untouched: "done"}  # queued, unleased, at the attempts it was handed at
    states = dict(sql_rows(store, "SELECT id, state FROM items"))
    assert states == {taken: "leased", retried: "queued", untouched: "done"}
    assert sql_rows(store, f"SELECT attempts FROM items WHERE id = '{retried}'") == [(1,)]
    assert sql_rows(store, "SELECT item_id FROM contents") == [(untouched,)]
    # Written or not, none is handed any more: this store may choose the requeued one again.
    assert [i.id for i in _hand_all(store).handed] == [retried]
    other.close()
    store.close()


def _documents(store: SQLiteStore, n: int) -> list[str]:
    items = [
        NewItem(kind="document", payload={"content": f"document {i % (n // 2)} " + "words " * 40})
        for i in range(n)
    ]
    return [r.id for r in store.enqueue(items)]


class _CountingStore(SQLiteStore):
    """A real SQLite store that counts the documents settle_handed was given."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.handed_written = 0

    def settle_handed(self, docs: Any, attempts: Any) -> dict[str, str]:
        self.handed_written += len(docs)
        return super().settle_handed(docs, attempts)


def _workers_ready(engine: Any, count: int) -> None:
    wait_for(lambda: sum(w.ready for w in engine.workers.live()) == count, 30, f"{count} workers ready")


def test_the_engine_hands_documents_to_its_workers_and_ends_each_once(
    settings: Settings, tmp_path: Path
) -> None:
    store = _CountingStore(tmp_path / "engine.db")
    fast = settings.replace(workers=2, poll_interval_ms=10)
    with engine_thread(fast, store, PIPELINE) as engine:
        _workers_ready(engine, 2)  # before: the engine settles them itself
        ids = _documents(store, 600)  # each text twice: 300 stored, 300 duplicates
        # Whitespace only: a worker cannot store it; settled inline, it fails as the pipeline does.
        (blank,) = (r.id for r in store.enqueue([NewItem(kind="document", payload={"content": "  \n "})]))
        wait_for(lambda: finished(store) == len(ids) + 1, 60, "every document to finish")
        registry = engine.metrics.registry

        def processed() -> dict[str, float]:
            return {
                outcome: registry.get_sample_value(
                    "atlas_engine_items_processed_total", {"kind": "document", "outcome": outcome}
                )
                or 0.0
                for outcome in ("done", "duplicate", "dead")
            }

        # The loop counts a write once its commit has returned: the rows can be final a moment before.
        wait_for(lambda: sum(processed().values()) >= len(ids) + 1, 10, "the engine to count every item")
        assert processed() == {"done": 300, "duplicate": 300, "dead": 1}
        normalised = registry.get_sample_value(
            "atlas_engine_stage_duration_seconds_count", {"stage": "normalise"}
        )
        assert normalised == 601
    assert store.handed_written == 600  # each written once, from a worker's results
    counts = store.counts()
    assert counts.get(("done", "document")) == 300 and counts.get(("duplicate", "document")) == 300
    assert sql_rows(store, "SELECT count(*), count(DISTINCT item_id) FROM completions") == [(601, 601)]
    assert sql_rows(store, "SELECT count(*) FROM completions WHERE lease_token IS NOT NULL") == [(0,)]
    empty = store.get_item(blank)
    assert empty is not None and empty.state == "dead" and empty.dead_reason == "permanent"
    assert empty.last_error is not None and empty.last_error.stage == "normalise"
    store.close()


def test_a_worker_killed_while_settling_loses_nothing_and_its_documents_are_leased_next(
    settings: Settings, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "kill.db", synchronous="NORMAL")
    # Large documents (a few milliseconds each to settle), so a whole claim's worth takes long
    # enough to stop its worker in the middle of it.
    big = "word " * 12_000
    fast = settings.replace(workers=2, poll_interval_ms=10)
    with engine_thread(fast, store, PIPELINE) as engine:
        _workers_ready(engine, 2)
        ids = [
            r.id
            for r in store.enqueue(
                [NewItem(kind="document", payload={"content": f"{i} {big}"}) for i in range(300)]
            )
        ]

        def settling_worker() -> Any:
            return next((w for w in engine.workers.live() if w.settling), None)

        wait_for(lambda: settling_worker() is not None, 30, "a worker settling handed documents", poll=0.002)
        victim = settling_worker()
        os.kill(victim.process.pid, signal.SIGSTOP)  # it can send nothing more
        holding = set(victim.settling)
        os.kill(victim.process.pid, signal.SIGKILL)
        wait_for(lambda: finished(store) == len(ids), 60, "every document to finish")
        assert (
            engine.metrics.registry.get_sample_value("atlas_engine_worker_deaths_total", {"reason": "died"})
            == 1
        )
    assert sql_rows(store, "SELECT count(*), count(DISTINCT item_id) FROM completions") == [(300, 300)]
    assert store.counts().get(("done", "document")) == 300
    # What it held when stopped went through a lease next (a second death would count), but for
    # any results it sent before it stopped; no death counted against any document (never
    # leased, it was not running any).
    leased = {i for (i,) in sql_rows(store, "SELECT item_id FROM completions WHERE lease_token IS NOT NULL")}
    assert leased and leased <= holding
    assert sql_rows(store, "SELECT count(*) FROM items WHERE deaths > 0") == [(0,)]
    store.close()
