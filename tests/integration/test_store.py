"""The store protocol against both backends (a real SQLite file per test, a real PostgreSQL
database emptied per test), with a fake clock for lease arithmetic. Backend-specific checks are
the tests named for their backend."""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from atlas.engine import queue
from atlas.errors import StoreError
from atlas.store.models import ContentResult, DLQFilter, ErrorInfo, NewItem, Transition
from atlas.store.postgres import PostgresStore
from atlas.store.sqlite import SQLiteStore, migrations
from tests.helpers.stores import second_handle, sql_rows


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def doc(text: str, **kw: object) -> NewItem:
    return NewItem(kind="document", payload={"content": text, "content_type": "text/plain"}, **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store_clock(clock: Clock) -> Clock:
    return clock


@pytest.fixture
def db(any_store: Any) -> Any:
    return any_store


@pytest.fixture
def sqlite_db(tmp_path: Path, clock: Clock) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "a.db", synchronous="NORMAL", clock=clock)
    yield s  # type: ignore[misc]
    s.close()


POLICY = queue.RetryPolicy(max_attempts=2, max_deaths=2)


def test_migrations_are_all_applied_and_idempotent(db: Any) -> None:
    if isinstance(db, SQLiteStore):
        shipped = migrations()
    else:
        from atlas.store.postgres.connection import migrations as shipped_pg

        shipped = shipped_pg()
    assert db.schema_version() == max(version for version, _, _ in shipped)  # all applied
    assert db.migrate() == 0


def test_the_sqlite_database_is_wal(sqlite_db: SQLiteStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_enqueue_is_durable_and_an_idempotency_key_returns_the_same_item(db: Any) -> None:
    first = db.enqueue([doc("a", idempotency_key="k"), doc("b")])
    again = db.enqueue(
        [
            doc("other text", idempotency_key="k"),
            doc("c", idempotency_key="k2"),
            doc("d", idempotency_key="k2"),
        ]
    )
    assert first[0].created and not again[0].created and again[0].id == first[0].id
    assert again[1].created and not again[2].created and again[2].id == again[1].id
    assert sum(db.counts().values()) == 3  # a, b, c


def test_enqueue_keeps_the_counters_and_values_json_cannot_carry_fast_still_store(db: Any) -> None:
    items = [doc(f"d{i}") for i in range(5)] + [NewItem(kind="url", payload={"url": "http://a/"})]
    items += [doc("keyed", idempotency_key="k"), doc("keyed again", idempotency_key="k")]  # one item
    # Outside what orjson encodes (an integer over 64 bits, a lone surrogate): stored all the same.
    items.append(doc("big", metadata={"n": 2**70, "s": "\ud800"}))
    results = db.enqueue(items)
    assert db.counts() == {("queued", "document"): 7, ("queued", "url"): 1}
    assert db.get_item(results[-1].id).metadata == {"n": 2**70, "s": "\ud800"}  # type: ignore[union-attr]
    db.enqueue([doc("repeat", idempotency_key="k")])  # a repeat counts nothing
    sql_rows(  # rows put in by hand are counted by a recount
        db,
        "INSERT INTO items (id, kind, state, payload, next_attempt_at, created_at, updated_at)"
        " VALUES ('hand', 'url', 'done', '{}', 0, 0, 0)",
    )
    db.recount_items()
    assert db.counts() == {("queued", "document"): 7, ("queued", "url"): 1, ("done", "url"): 1}


def test_two_owners_never_lease_the_same_item(db: Any) -> None:
    db.enqueue([doc(f"t{i}") for i in range(500)])
    got: dict[str, list[str]] = {"a": [], "b": []}

    def take(owner: str) -> None:
        while batch := db.claim(owner, 7, 30):
            got[owner].extend(c.id for c in batch)

    threads = [threading.Thread(target=take, args=(o,)) for o in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got["a"]) + len(got["b"]) == 500
    assert not set(got["a"]) & set(got["b"])


def test_concurrent_enqueues_of_one_idempotency_key_make_one_item(db: Any) -> None:
    """Two handles (two processes' worth) race to enqueue the same keys: each key is one item,
    created once, and every caller is told its id."""
    other = second_handle(db)
    keys = [f"k{i}" for i in range(20)]
    results: list[list[Any]] = []
    start = threading.Barrier(6)

    def race(store: Any, order: list[str]) -> None:
        start.wait()
        for chunk in range(0, len(order), 5):
            results.append(store.enqueue([doc(k, idempotency_key=k) for k in order[chunk : chunk + 5]]))

    threads = [
        threading.Thread(target=race, args=(db if i % 2 else other, keys[::-1] if i % 3 else keys))
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    flat = [r for batch in results for r in batch]
    assert len(flat) == 6 * 20
    assert len({r.id for r in flat}) == 20
    assert sum(r.created for r in flat) == 20  # one creation per key; every other call a replay
    assert db.counts() == {("queued", "document"): 20}


def test_the_same_text_finished_by_two_engines_at_once_is_stored_once(db: Any) -> None:
    """Engines on two handles apply successes carrying the same text concurrently: one item is
    done and holds the text, every other is its duplicate."""
    other = second_handle(db)
    for round_ in range(3):
        db.enqueue([doc(f"same {round_}") for _ in range(6)])
        mine, theirs = db.claim("a", 3, 30), other.claim("b", 3, 30)
        start = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def finish(
            store: Any, batch: list[Any], text: str, start: threading.Barrier, outcome: dict[str, str]
        ) -> None:
            start.wait()
            outcome.update(store.apply([queue.succeeded(c, ContentResult(f"H{text}", text)) for c in batch]))

        text = f"same {round_}"
        threads = [
            threading.Thread(target=finish, args=(s, b, text, start, outcome))
            for s, b in ((db, mine), (other, theirs))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome.values()) == ["done"] + ["duplicate"] * 5
        (original,) = [i for i, o in outcome.items() if o == "done"]
        for item_id, o in outcome.items():
            item = db.get_item(item_id)
            assert item is not None and item.state == o
            assert item.duplicate_of == (None if item_id == original else original)
        assert db.get_content(original) is not None
    other.close()
    assert db.completions() == {i: 1 for i in db.completions()} and len(db.completions()) == 18


def test_claim_order_is_priority_then_due_time_and_respects_not_before(db: Any, clock: Clock) -> None:
    low = db.enqueue([doc("low")])[0].id
    clock.now += 1
    high = db.enqueue([doc("high", priority=10)])[0].id
    later = db.enqueue([doc("later", not_before=clock.now + 60)])[0].id
    assert [c.id for c in db.claim("o", 1, 30)] == [high]
    assert [c.id for c in db.claim("o", 1, 30)] == [low]
    assert db.claim("o", 10, 30) == []  # `later` is not due yet
    clock.now += 61
    assert [c.id for c in db.claim("o", 10, 30)] == [later]


def test_a_lease_expires_only_after_its_time_and_heartbeats_extend_it(db: Any, clock: Clock) -> None:
    db.enqueue([doc("x")])
    (item,) = db.claim("engine-1", 10, lease_seconds=30)
    clock.now += 29
    assert db.reap_expired(max_lease_expiries=5) == 0
    assert db.heartbeat("engine-1", 30) == 1  # now leased until +59
    clock.now += 29
    assert db.reap_expired(5) == 0
    clock.now += 2
    assert db.reap_expired(5) == 1
    back = db.get_item(item.id)
    assert back is not None and (back.state, back.lease_expiries, back.attempts) == ("queued", 1, 0)
    assert [a.outcome for a in db.item_attempts(item.id)] == ["lease_expired"]
    # the old holder's late result is refused: its token is stale once the item is claimed again
    (again,) = db.claim("engine-2", 10, 30)
    assert db.apply([queue.succeeded(item, ContentResult("h1", "x"))]) == {}
    assert db.apply([queue.succeeded(again, ContentResult("h1", "x"))]) == {again.id: "done"}
    assert db.completions() == {item.id: 1}


def test_too_many_expired_leases_quarantine_the_item(db: Any, clock: Clock) -> None:
    (item_id,) = [r.id for r in db.enqueue([doc("x")])]
    for _ in range(3):
        db.claim("o", 1, 10)
        clock.now += 11
        db.reap_expired(max_lease_expiries=3)
    item = db.get_item(item_id)
    assert item is not None and (item.state, item.dead_reason) == ("dead", "lease_expired")
    assert db.completions() == {item_id: 1}


def test_identical_content_becomes_a_duplicate_of_the_original(db: Any) -> None:
    db.enqueue([doc("same"), doc("same")])
    a, b = db.claim("o", 10, 30)
    applied = db.apply(
        [queue.succeeded(a, ContentResult("H", "same")), queue.succeeded(b, ContentResult("H", "same"))]
    )
    assert applied == {a.id: "done", b.id: "duplicate"}
    dup = db.get_item(b.id)
    assert dup is not None and (dup.state, dup.duplicate_of) == ("duplicate", a.id)
    assert db.get_content(a.id) is not None and db.get_content(b.id) is None


def test_one_batch_dedupes_by_text_then_canonical_url_against_the_store_and_itself(db: Any) -> None:
    """PostgreSQL decides a whole batch from one owner lookup and one insert: it must decide as the
    one-by-one check-then-insert does, in text-hash order (SQLite's order too)."""
    db.enqueue([doc("old")])
    (old,) = db.claim("o", 1, 30)
    db.apply([queue.succeeded(old, ContentResult("H0", "old", canonical_url="https://v/"))])
    db.enqueue([doc(str(i)) for i in range(5)])
    c = db.claim("o", 5, 30)
    results = [
        ContentResult("H1", "x", canonical_url="https://u/"),  # stored
        ContentResult("H2", "y", canonical_url="https://u/"),  # same page as H1: duplicate of it
        ContentResult("H1", "x"),  # same text as H1
        ContentResult("H3", "w", canonical_url="https://v/"),  # page stored before this batch
        ContentResult("H4", "z", canonical_url="https://z/"),  # stored
    ]
    applied = db.apply([queue.succeeded(item, r) for item, r in zip(c, results, strict=True)])
    assert [applied[item.id] for item in c] == ["done", "duplicate", "duplicate", "duplicate", "done"]
    assert [db.get_item(item.id).duplicate_of for item in c] == [  # type: ignore[union-attr]
        None,
        c[0].id,
        c[0].id,
        old.id,
        None,
    ]
    assert [db.get_content(item.id) is not None for item in c] == [True, False, False, False, True]


def test_an_empty_result_stores_nothing_and_owns_nothing_on_both_backends(db: Any) -> None:
    """An empty text (a 304 whose content has since been deleted) is a duplicate only of a stored
    text: two of them in one batch are both done (SQLite made the second a duplicate of the
    first, which stored nothing), one whose text is still stored is its duplicate."""
    db.enqueue([doc("kept")])
    (kept,) = db.claim("o", 1, 30)
    db.apply([queue.succeeded(kept, ContentResult("HK", "kept"))])
    db.enqueue([doc(str(i)) for i in range(3)])
    c = db.claim("o", 3, 30)
    results = [ContentResult("HGONE", ""), ContentResult("HGONE", ""), ContentResult("HK", "")]
    applied = db.apply([queue.succeeded(item, r) for item, r in zip(c, results, strict=True)])
    assert [applied[item.id] for item in c] == ["done", "done", "duplicate"]
    assert [db.get_item(item.id).duplicate_of for item in c] == [None, None, kept.id]  # type: ignore[union-attr]
    assert [db.get_content(item.id) for item in c] == [None, None, None]


def test_failures_build_a_history_and_the_dlq_groups_replays_and_purges(db: Any, clock: Clock) -> None:
    ids = [r.id for r in db.enqueue([doc(f"d{i}", source="feed-a" if i < 3 else "feed-b") for i in range(5)])]
    err_a = ErrorInfo("fetch", "ConnectError", "refused", "a.example")
    err_b = ErrorInfo("extract", "NoText", "empty page", None)
    for _round in range(2):
        batch = db.claim("o", 10, 30)
        db.apply(
            [
                queue.failed(
                    c,
                    err_a if c.source == "feed-a" else err_b,
                    permanent=False,
                    policy=POLICY,
                    now=clock.now,
                    rand=lambda: 0.0,
                )
                for c in batch
            ]
        )
    assert {db.get_item(i).state for i in ids} == {"dead"}  # type: ignore[union-attr]
    history = db.item_attempts(ids[0])
    assert [(h.attempt, h.outcome, h.error_class, h.host) for h in history] == [
        (1, "retry", "ConnectError", "a.example"),
        (2, "dead", "ConnectError", "a.example"),
    ]
    groups = db.dlq_groups(DLQFilter())
    assert [(g.stage, g.error_class, g.host, g.count) for g in groups] == [
        ("fetch", "ConnectError", "a.example", 3),
        ("extract", "NoText", None, 2),
    ]
    assert len(db.dlq_list(DLQFilter(host="a.example"))) == 3
    assert db.dlq_replay(DLQFilter(stage="extract"), dry_run=True) == 2
    assert db.get_item(ids[4]).state == "dead"  # type: ignore[union-attr]
    assert db.dlq_replay(DLQFilter(stage="extract")) == 2
    replayed = db.get_item(ids[4])
    assert replayed is not None and (replayed.state, replayed.attempts) == ("queued", 0)
    assert db.item_attempts(ids[4])[-1].outcome == "replayed"
    clock.now += 86400 * 40
    assert db.dlq_purge(DLQFilter(dead_before=clock.now - 86400 * 30), dry_run=True) == 3
    assert db.dlq_purge(DLQFilter(dead_before=clock.now - 86400 * 30)) == 3
    assert db.get_item(ids[0]) is None and db.item_attempts(ids[0]) == []


def test_release_gives_leases_back_without_spending_attempts(db: Any) -> None:
    db.enqueue([doc("a"), doc("b")])
    db.claim("o", 10, 30)
    assert db.release("o") == 2
    assert db.counts() == {("queued", "document"): 2}


def test_driver_errors_become_store_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"dir\.db"):
        SQLiteStore(tmp_path / "dir.db")


def test_an_unreachable_postgres_is_a_store_error_naming_the_server_not_the_password() -> None:
    from atlas.store.postgres import connection

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://atlas:hunter2@127.0.0.1:{port}/atlas?connect_timeout=2"
    old = connection.POOL_TIMEOUT_SECONDS
    connection.POOL_TIMEOUT_SECONDS = 2.0
    try:
        with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{port}") as raised:
            PostgresStore(url)
    finally:
        connection.POOL_TIMEOUT_SECONDS = old
    assert "hunter2" not in str(raised.value)


def test_dlq_groups_keep_five_sample_ids(db: Any, clock: Clock) -> None:
    big = fill_two_dlq_groups(db, clock)
    groups = db.dlq_groups(DLQFilter())
    assert groups[0].sample_ids == sorted(big)[:5]  # the first five of the group, in id order
    assert db.dlq_groups(DLQFilter(host="a.example"))[0].sample_ids == sorted(big)[:5]


def fill_two_dlq_groups(db: Any, clock: Clock) -> list[str]:
    """Twelve dead items of one fingerprint, two of another; returns the twelve's ids."""
    big = [r.id for r in db.enqueue([doc(f"big{i}") for i in range(12)])]
    small = [r.id for r in db.enqueue([doc(f"small{i}") for i in range(2)])]
    batch = {c.id: c for c in db.claim("o", 20, 30)}
    err_big = ErrorInfo("fetch", "ConnectError", "refused", "a.example")
    err_small = ErrorInfo("extract", "NoText", "empty page", None)
    db.apply(
        [
            queue.failed(
                c,
                err_big if i in big else err_small,
                permanent=True,
                policy=POLICY,
                now=clock.now,
                rand=lambda: 0.0,
            )
            for i, c in batch.items()
        ]
    )
    groups = db.dlq_groups(DLQFilter())
    assert [(g.stage, g.error_class, g.host, g.count) for g in groups] == [
        ("fetch", "ConnectError", "a.example", 12),
        ("extract", "NoText", None, 2),
    ]
    assert sorted(groups[1].sample_ids) == sorted(small)
    return big


def test_sqlite_dlq_groups_never_aggregate_a_whole_group(sqlite_db: SQLiteStore, clock: Clock) -> None:
    fill_two_dlq_groups(sqlite_db, clock)
    db = sqlite_db

    # The statement's shape: group_concat sees at most five ids per group returned, however big
    # the group. Counted by a group_concat of our own, which SQLite lets a connection define.
    from atlas.store.sqlite import dlq_groups_query

    seen = [0]

    class CountingConcat:
        def __init__(self) -> None:
            self.ids: list[str] = []

        def step(self, value: str) -> None:
            seen[0] += 1
            self.ids.append(value)

        def finalize(self) -> str:
            return ",".join(self.ids)

    sql, params = dlq_groups_query(DLQFilter())
    with sqlite3.connect(db.path) as conn:
        conn.create_aggregate("group_concat", 1, CountingConcat)  # type: ignore[arg-type]
        rows = conn.execute(sql, {**params, "limit": 50}).fetchall()
        assert len(rows) == 2 and seen[0] == 5 + 2
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", {**params, "limit": 50}))
    assert "CORRELATED SCALAR SUBQUERY" in plan, plan


def test_memory_samples_are_bounded_by_age_and_by_count(tmp_path: Path) -> None:
    from atlas.store.sqlite_ops import RssSample

    now = [1000.0]
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL", clock=lambda: now[0])
    try:
        store.rss_record([RssSample(at, "atlas-api", 1, 10) for at in (100.0, 500.0, 900.0)], 1e9)
        assert store.rss_record([RssSample(1000.0, "atlas-api", 1, 10)], retain_seconds=200) == 2
        assert [s.at for s in store.rss_history(0)] == [900.0, 1000.0]
        store.rss_record([RssSample(1000.0 + i, "atlas-core", 2, i) for i in range(5)], 1e9, max_rows=3)
        assert [s.rss_bytes for s in store.rss_history(0)] == [2, 3, 4]
    finally:
        store.close()


def test_finished_since_counts_the_window_only(tmp_path: Path) -> None:
    now = [1000.0]
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL", clock=lambda: now[0])
    try:
        store.enqueue([NewItem(kind="document", payload={"content": str(i)}) for i in range(9)])
        for i in range(9):  # one completion every 100 s, alternately done and dead
            now[0] = 1000.0 + 100 * i
            (c,) = store.claim("o", 1, 30)
            state = "done" if i % 2 == 0 else "dead"
            store.apply([Transition(c.id, c.token, state, state)])
        assert store.finished_since(1450.0) == {"done": 2, "dead": 2}  # at 1500..1800
        assert store.finished_since(0.0) == {"done": 5, "dead": 4}
        assert store.finished_since(5000.0) == {}
    finally:
        store.close()


def test_shared_state_and_api_keys(db: Any, clock: Clock) -> None:
    db.kv_set("engine.heartbeat.a", "1")
    db.kv_set("engine.heartbeat.b", "2")
    db.kv_set("engine.heartbeat.a", "3")  # an upsert
    assert db.kv_get("engine.heartbeat.a") == "3" and db.kv_get("nothing") is None
    assert db.kv_items("engine.heartbeat.") == [("engine.heartbeat.a", "3"), ("engine.heartbeat.b", "2")]
    clock.now += 100
    db.kv_set("engine.heartbeat.b", "4")
    assert db.kv_prune("engine.heartbeat.", older_than_seconds=50) == 1  # only a is stale
    db.kv_delete("engine.heartbeat.b")
    assert db.kv_items("engine.") == []

    db.api_key_insert("key1", "ci", ["ingest", "read"], "hash-1", "pep1")
    db.api_key_record_use([("key1", clock.now)], [("key1", "stale-hash", "hash-x", "pep2")])
    key = db.api_key_get("key1")
    assert key is not None and (key["secret_hash"], key["last_used_at"]) == ("hash-1", clock.now)
    db.api_key_record_use([("key1", clock.now - 10)], [("key1", "hash-1", "hash-2", "pep2")])
    key = db.api_key_get("key1")  # an older touch never moves last_used_at back
    assert key is not None and (key["secret_hash"], key["pepper_id"], key["last_used_at"]) == (
        "hash-2",
        "pep2",
        clock.now,
    )
    assert [k["id"] for k in db.api_key_list()] == ["key1"]
    assert db.api_key_revoke("key1") and not db.api_key_revoke("key1")


def test_the_oldest_queued_item_stays_right_as_items_of_different_ages_move(db: Any, clock: Clock) -> None:
    """SQLite serves the gauge by walking the primary key from a remembered lower bound of the
    queued ids (migration 0010) instead of an index: items going back to the queue (retry,
    release, reaped lease), the bound's advance and a clock stepping back must not fool it. The
    exporter's snapshot reads the same query as queue_stats."""

    def oldest() -> float:
        value = float(db.queue_stats()["oldest_queued_at"])
        assert float(db.stats_snapshot().oldest_queued_at or 0.0) == value  # the exporter's read
        return value

    clock.now = 1_000.0
    a, b = (r.id for r in db.enqueue([doc("a"), doc("b")]))
    clock.now = 1_010.0
    db.enqueue([doc("c")])
    clock.now = 1_020.0
    db.enqueue([doc("d")])
    assert oldest() == 1_000.0
    first = db.claim("o", 2, 30)
    assert {c.id for c in first} == {a, b} and oldest() == 1_010.0
    (c_item,) = db.claim("o", 1, 30)
    db.apply([queue.succeeded(c_item, ContentResult("hc", "c"))])
    db.reap_expired(5)  # SQLite: moves the bound up to d, past a, b (leased) and c (done)
    assert oldest() == 1_020.0
    retry = [c for c in first if c.id == a]
    error = ErrorInfo("fetch", "E", "x")
    db.apply([queue.failed(retry[0], error, permanent=False, policy=POLICY, now=clock.now, rand=lambda: 0.0)])
    assert oldest() == 1_000.0  # a is queued again, below the bound
    db.reap_expired(5)
    assert oldest() == 1_000.0
    assert db.release("o") == 1 and oldest() == 1_000.0  # b back too
    clock.now = 1_000.0 + 3600  # a's retry is due
    while db.claim("o", 10, 30):
        pass
    assert oldest() == 0.0
    db.reap_expired(5)
    assert oldest() == 0.0
    clock.now = 500.0  # the clock stepped back: the new id sorts below every id so far
    db.enqueue([doc("e")])
    assert oldest() == 500.0
    clock.now += 1_000  # lease expiry: e's lease is reaped back into the queue
    (e_item,) = db.claim("o", 1, 0.5)
    clock.now += 1
    db.reap_expired(5)
    assert db.get_item(e_item.id).state == "queued" and oldest() == 500.0  # type: ignore[union-attr]
    clock.now = 2_000.0009  # two acceptances in one millisecond: ids order them at random
    db.enqueue([doc("f")])
    clock.now = 2_000.0001
    db.enqueue([doc("g")])
    db.claim("o", 1, 30)  # e leaves
    assert oldest() == pytest.approx(2_000.0001, abs=1e-7)


def test_a_large_batch_without_keys_goes_in_whole_with_its_feeds_and_counters(db: Any, clock: Clock) -> None:
    """PostgreSQL COPYs key-less batches of 20 items or more: every column, the counters (its
    statement trigger) and the feed subscriptions must come out as from the INSERT path."""
    items = [
        doc(f"d{i}", source="s", priority=-i, metadata={"n": i}, trace_context="00-ab-cd-01")
        for i in range(24)
    ]
    # A whole-second not_before (an int): PostgreSQL's binary COPY sends it as a double all the same.
    items.append(NewItem(kind="feed", payload={"url": "http://f.test/rss"}, not_before=int(clock.now) + 60))
    results = db.enqueue(items)
    assert all(r.created for r in results) and len({r.id for r in results}) == 25
    assert db.counts() == {("queued", "document"): 24, ("queued", "feed"): 1}
    first, feed = db.get_item(results[0].id), db.get_item(results[-1].id)
    assert first is not None and (first.source, first.metadata, first.trace_context) == (
        "s",
        {"n": 0},
        "00-ab-cd-01",
    )
    assert [item.priority for item in map(db.get_item, (r.id for r in results[:3])) if item] == [0, -1, -2]
    assert (first.created_at, first.updated_at, first.next_attempt_at) == (clock.now, clock.now, clock.now)
    assert feed is not None and (feed.payload, feed.next_attempt_at) == (
        {"url": "http://f.test/rss"},
        int(clock.now) + 60,
    )
    assert [f["url"] for f in db.feed_list()] == ["http://f.test/rss"]
    assert db.queue_stats()["oldest_queued_at"] == clock.now


def test_plain_batches_of_any_size_go_in_whole_with_every_column(db: Any, clock: Clock) -> None:
    """Rows with no source, key, metadata or request hash take SQLite's multi-row insert in chunks
    of 512 then powers of two (sqlite_items._insert_plain): sizes around those edges must store
    every row and column as the general path does, and the counters."""
    sizes = [1, 3, 513, 1100]
    batches = [
        [
            doc(f"p{n}-{i}", priority=i % 5, not_before=clock.now + i, trace_context=f"00-{n}-{i}-01")
            for i in range(n)
        ]
        for n in sizes
    ]
    ids = [[r.id for r in db.enqueue(batch)] for batch in batches]
    assert db.counts() == {("queued", "document"): sum(sizes)}
    assert sql_rows(db, "SELECT COUNT(*) FROM items WHERE source IS NULL AND metadata IS NULL")[0][0] == sum(
        sizes
    )
    for batch, batch_ids in zip(batches, ids, strict=True):
        assert len(set(batch_ids)) == len(batch)
        for i in (0, len(batch) // 2, len(batch) - 1):
            got = db.get_item(batch_ids[i])
            assert got is not None
            assert (got.payload, got.priority, got.trace_context, got.state) == (
                batch[i].payload,
                batch[i].priority,
                batch[i].trace_context,
                "queued",
            )
            assert (got.source, got.idempotency_key, got.metadata) == (None, None, None)
            assert (got.created_at, got.updated_at, got.next_attempt_at) == (
                clock.now,
                clock.now,
                clock.now + i,
            )
    if isinstance(db, SQLiteStore):  # the multi-row statement ran, not executemany's per-row one
        assert "insert_item_plain" in db.query_timings and "insert_item" not in db.query_timings
