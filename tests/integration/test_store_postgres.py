"""What only the PostgreSQL backend has: LISTEN/NOTIFY wake-ups, its schema checks and migration
lock, counter compaction, and the factory choosing it from ATLAS_DATABASE_URL. (Everything the
Store protocol promises is proved on both backends by test_store.py and test_store_counters.py.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from atlas.errors import DatabaseNotReady
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.models import ContentResult, ErrorInfo, NewItem, Transition
from atlas.store.postgres import PostgresStore
from atlas.store.postgres.connection import migrations
from atlas.store.postgres.store import Q
from tests.helpers.postgres import scratch_database
from tests.helpers.stores import sql_rows


@pytest.fixture
def empty_database_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards)."""
    with scratch_database(postgres_url, "atlas_fresh") as url:
        yield url


def doc(text: str) -> NewItem:
    return NewItem(kind="document", payload={"content": text})


def test_an_enqueue_wakes_an_engine_waiting_for_work(pg: PostgresStore) -> None:
    other = PostgresStore(pg.url, pool_size=1)  # the API process
    try:
        assert pg.wait_for_work(0) is False  # subscribed now; nothing enqueued yet
        other.enqueue([doc("a"), doc("b")])
        # The notification is already queued on the LISTEN connection: no wait, no sleep.
        assert pg.wait_for_work(30) is True
        assert pg.wait_for_work(0) is False  # one enqueue, one wake-up (the rest drained)
        other.enqueue([NewItem(kind="document", payload={"content": "c"}, idempotency_key="k")])
        other.enqueue([NewItem(kind="document", payload={"content": "c"}, idempotency_key="k")])
        assert pg.wait_for_work(30) is True
        assert pg.wait_for_work(0) is False  # the replay of key k inserted nothing and woke nobody
    finally:
        other.close()


def test_a_waiting_engine_returns_as_soon_as_another_process_enqueues(pg: PostgresStore) -> None:
    other = PostgresStore(pg.url, pool_size=1)
    woke: list[bool] = []
    pg.wait_for_work(0)  # LISTEN before the enqueue below can commit
    waiter = threading.Thread(target=lambda: woke.append(pg.wait_for_work(60)))
    waiter.start()
    try:
        other.enqueue([doc("x")])
        waiter.join(60)
        assert woke == [True]
    finally:
        other.close()


def test_without_migrate_an_empty_database_is_not_ready_and_migrations_run_once_when_raced(
    empty_database_url: str,
) -> None:
    with pytest.raises(DatabaseNotReady, match=r"schema version 0.*atlas-ops database migrate"):
        PostgresStore(empty_database_url, migrate=False)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def open_one() -> None:
        start.wait()
        try:
            stores.append(PostgresStore(empty_database_url, pool_size=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # Each migration is its own transaction under the lock, so the three may share them out
    # (one applies 0001, another the rest): what must hold is that each ran exactly once.
    assert sum(s.migrations_applied for s in stores) == len(migrations())
    for s in stores:
        s.close()
    PostgresStore(empty_database_url, migrate=False).close()  # at the current schema now


def test_compacting_the_counters_folds_delta_rows_and_keeps_the_figures(pg: PostgresStore) -> None:
    for i in range(5):
        pg.enqueue([doc(f"d{i}")])
    pg.claim("o", 2, 30)
    before = pg.counts()
    assert len(sql_rows(pg, "SELECT * FROM stats_items")) > 2  # one delta row per change
    assert pg.compact_counters() is True
    assert pg.counts() == before == {("queued", "document"): 3, ("leased", "document"): 2}
    assert sorted(sql_rows(pg, "SELECT state, kind, n FROM stats_items")) == [
        ("leased", "document", 2),
        ("queued", "document", 3),
    ]


def test_a_rolled_back_completion_does_not_move_the_completed_counter(pg: PostgresStore) -> None:
    """atlas_items_completed_total counts committed completions; a transaction that recorded one
    and rolled back burnt a completions.seq value, which max(seq) used to count."""
    from atlas.store.postgres.apply import apply_transitions

    pg.enqueue([doc("a"), doc("b"), doc("c")])
    first, second, third = pg.claim("o", 3, 30)
    pg.apply([Transition(first.id, first.token, "done", "done")])
    # The engine's real apply, in a transaction that fails before its commit.
    with pytest.raises(RuntimeError), pg.db.transaction() as conn:
        assert apply_transitions(conn, [Transition(second.id, second.token, "done", "done")], 1.0)
        raise RuntimeError("the engine died before COMMIT")
    pg.apply([Transition(third.id, third.token, "done", "done")])
    assert set(pg.completions()) == {first.id, third.id}
    assert pg.stats_snapshot().completed == 2
    assert pg.queue_stats()["completions"] == 2
    assert pg.compact_counters() is True
    assert pg.stats_snapshot().completed == 2


def test_the_factory_opens_postgres_for_a_postgresql_url(pg: PostgresStore, settings: Settings) -> None:
    store: Any = open_store(settings.replace(database_url=pg.url, db_pool_size=2), migrate=False)
    try:
        assert isinstance(store, PostgresStore)
        assert store.db.pool.max_size == 2
        assert store.enqueue([doc("through the factory")])[0].created
    finally:
        store.close()


def _done(item: Any, text: str) -> Transition:
    result = ContentResult(content_hash=f"h-{text}", text=text, content_type="text/plain")
    return Transition(item.id, item.token, "done", "done", result=result)


def test_an_applied_batch_adds_one_counter_row_per_change_not_one_per_item(pg: PostgresStore) -> None:
    """Issue 18: each table is written by one statement per batch, so the counters' statement
    triggers add a delta row per (state, kind) changed, not per item (that cost the engine more
    than its floor's whole write)."""
    pg.enqueue([doc(f"d{i}") for i in range(12)])
    claimed = pg.claim("o", 12, 30)
    assert pg.compact_counters() is True
    batch = [_done(c, f"text {i}") for i, c in enumerate(claimed[:9])]
    batch.append(_done(claimed[9], "text 0"))  # the same text as the first: its duplicate
    retry, dead = claimed[10], claimed[11]
    error = ErrorInfo(stage="fetch", error_class="Boom", message="m", host="h")
    # next_attempt_at an int among floats: one array of one type all the same.
    batch.append(Transition(retry.id, retry.token, "queued", "retry", error=error, next_attempt_at=5))
    batch.append(Transition(dead.id, dead.token, "dead", "dead", error=error, dead_reason="poison"))
    applied = pg.apply(batch)
    assert applied[claimed[9].id] == "duplicate" and applied[dead.id] == "dead"
    # leased -12, done +9, duplicate +1, queued +1, dead +1: one row per key, one statement.
    assert len(sql_rows(pg, "SELECT * FROM stats_items")) == 2 + 5
    assert len(sql_rows(pg, "SELECT * FROM stats_completions")) == 2  # compacted + this batch
    assert len(sql_rows(pg, "SELECT * FROM stats_contents")) == 2
    assert pg.counts() == {
        ("done", "document"): 9,
        ("duplicate", "document"): 1,
        ("queued", "document"): 1,
        ("dead", "document"): 1,
    }
    assert pg.stats_snapshot().completed == 11
    assert sql_rows(pg, f"SELECT duplicate_of FROM items WHERE id = '{claimed[9].id}'") == [(claimed[0].id,)]
    assert sql_rows(pg, "SELECT item_id, attempt, outcome, stage FROM attempts ORDER BY seq") == [
        (retry.id, 1, "retry", "fetch"),
        (dead.id, 1, "dead", "fetch"),
    ]


def test_an_item_listed_twice_in_one_apply_is_applied_and_completed_once(pg: PostgresStore) -> None:
    pg.enqueue([doc("a")])
    (item,) = pg.claim("o", 1, 30)
    assert pg.apply([_done(item, "once"), _done(item, "twice")]) == {item.id: "done"}
    assert pg.completions() == {item.id: 1}
    assert sql_rows(pg, "SELECT text FROM contents") == [("once",)]


def test_claims_commit_without_waiting_for_the_wal_flush_and_applies_wait_for_it(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose commit a server crash loses leaves its items queued, and the engine's apply
    then finds no lease and discards the results: claims need no flush wait. What an apply
    commits must survive a crash."""
    real = pg.db.transaction
    seen: list[str] = []

    @contextmanager
    def observed() -> Iterator[Any]:  # the real transaction; notes the level it commits with
        with real() as conn:
            yield conn
            seen.append(conn.execute("SELECT current_setting('synchronous_commit') AS s").fetchone()["s"])

    monkeypatch.setattr(pg.db, "transaction", observed)
    pg.enqueue([doc("a"), doc("b")])
    first, second = pg.claim("o", 2, 30)
    pg.apply([_done(first, "a")])
    assert seen == ["on", "off", "on"]
    # A claim lost in a crash, as the engine then sees it: the item is queued, the result dropped.
    pg.release("o")
    assert pg.apply([_done(second, "b")]) == {}
    assert pg.completions() == {first.id: 1}


@contextmanager
def explained(pg: PostgresStore, monkeypatch: pytest.MonkeyPatch, *names: str) -> Iterator[list[str]]:
    """The JSON plans of the named queries as the store runs them: its own connections explain
    each such statement, in its transaction and with its parameters, before running it."""
    real = pg.db.transaction
    plans: list[str] = []
    watched = [Q[name] for name in names]

    class Explaining:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if query in watched:
                row = self._conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchone()
                plans.append(json.dumps(row["QUERY PLAN"]))
            return self._conn.execute(query, params, **kwargs)

    @contextmanager
    def explaining() -> Iterator[Any]:
        with real() as conn:
            yield Explaining(conn)

    with monkeypatch.context() as patch:
        patch.setattr(pg.db, "transaction", explaining)
        yield plans


def test_claims_walk_the_due_index_when_the_statistics_say_nothing_is_queued(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a burst of enqueues into a table of done items, the planner's statistics still say
    almost nothing is queued; on that estimate it chose the smaller items_queued_created index
    and sorted every queued row, payloads and all, on each claim (40-130 ms a claim on 20,000
    queued documents). A claim must walk items_due, in claim order, and stop at its limit."""
    pg.enqueue([doc(f"old {i}") for i in range(3000)])
    with pg.db.transaction() as conn:
        conn.execute("UPDATE items SET state = 'done'")
        conn.execute("ANALYZE items")
    pg.enqueue([doc(f"new {i}") for i in range(600)])
    with explained(pg, monkeypatch, "due_locked", "claim") as plans:
        claimed = pg.claim("o", 100, 30)
        settled = pg.claim_settling("o", 100, 30, lambda item: None)
    assert len(claimed) == 100 and len(settled.leased) == 100
    assert len(plans) == 2
    for plan in plans:
        assert '"Index Name": "items_due"' in plan and '"Sort"' not in plan, plan
