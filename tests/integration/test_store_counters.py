"""The kept counters (stats_items, stats_dlq, stats_contents) against COUNT(*) over the rows.

A Hypothesis state machine drives a real store (SQLite, then PostgreSQL) through every path that
inserts, moves or deletes items (documents, URLs, feed items, feed polls, leases, successes,
duplicates, retries, deaths, expired leases, releases, DLQ replay and purge) and after EVERY step
compares each kept counter with the same figure computed from the tables, grouped the same way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from atlas.engine import queue
from atlas.store.models import Claimed, ContentResult, DLQFilter, ErrorInfo, NewItem, Transition
from atlas.store.sqlite import SQLiteStore, _split_sql, migrations
from tests.conftest import StoreFactory
from tests.helpers.stores import sql_rows

POLICY = queue.RetryPolicy(max_attempts=2, max_deaths=2)
ERRORS = [ErrorInfo("fetch", "ConnectError", "refused", "a.example"), ErrorInfo("extract", "NoText", "empty")]


def kept_and_counted(store: Any) -> tuple[dict[tuple[Any, ...], int], dict[tuple[Any, ...], int]]:
    """(kept counters, the same figures from COUNT(*)), zero rows left out of both.

    Kept counters are summed per key: PostgreSQL keeps them as delta rows (SQLite's one row per
    key sums to itself), so the same statements read both backends.
    """

    # One statement for each side: the invariant runs after every step.
    kept_sql = (
        "SELECT 'items', state, kind, sum(n) FROM stats_items GROUP BY state, kind"
        " UNION ALL SELECT 'dlq', stage, error_class, sum(n) FROM stats_dlq GROUP BY stage, error_class"
        " UNION ALL SELECT 'contents', 'n', '', coalesce(sum(n), 0) FROM stats_contents"
        " UNION ALL SELECT 'contents', 'bytes', '', coalesce(sum(bytes), 0) FROM stats_contents"
    )
    counted_sql = (
        "SELECT 'items', state, kind, count(*) FROM items GROUP BY state, kind"
        " UNION ALL SELECT 'dlq', coalesce(last_error_stage, ''), coalesce(last_error_class, ''), count(*)"
        " FROM items WHERE state = 'dead' GROUP BY 2, 3"
        " UNION ALL SELECT 'contents', 'n', '', count(*) FROM contents"
        " UNION ALL SELECT 'contents', 'bytes', '', coalesce(sum(bytes), 0) FROM contents"
    )
    kept = {(t, a, b): int(n) for t, a, b, n in sql_rows(store, kept_sql) if n}
    counted = {(t, a, b): int(n) for t, a, b, n in sql_rows(store, counted_sql) if n}
    return kept, counted


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CounterMachine(RuleBasedStateMachine):
    # Set by the test before each run: makes an empty store of the backend under test.
    factory: StoreFactory
    clock: Clock

    def __init__(self) -> None:
        super().__init__()
        self.clock.now = 1_000_000.0
        self.store = self.factory()
        self.leased: list[Claimed] = []
        self.feeds: list[str] = []
        self.serial = 0

    def teardown(self) -> None:
        self.store.close()

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    @rule(n=st.integers(1, 3), keyed=st.booleans())
    def enqueue_documents(self, n: int, keyed: bool) -> None:
        # A fixed idempotency key: the second time it names the existing item and counts nothing.
        self.store.enqueue(
            [
                NewItem(
                    kind="document",
                    payload={"content": f"d{self._next()}"},
                    idempotency_key="k" if keyed else None,
                )
                for _ in range(n)
            ]
        )

    @rule(n=st.integers(1, 3))
    def enqueue_urls(self, n: int) -> None:
        self.store.enqueue(
            [NewItem(kind="url", payload={"url": f"http://h{self._next()}.test/"}) for _ in range(n)]
        )

    @rule()
    def enqueue_feed_item(self) -> None:
        self.store.enqueue([NewItem(kind="feed", payload={"url": f"http://f{self._next()}.test/rss"})])

    @rule(entries=st.lists(st.integers(0, 5), max_size=4))
    def poll_a_feed(self, entries: list[int]) -> None:
        if not self.feeds:
            self.feeds.append(str(self.store.feed_add("http://feed.test/rss")["id"]))
        # Entry keys repeat across polls: only new ones become items.
        self.store.feed_polled(
            self.feeds[0],
            [(f"e{e}", NewItem(kind="url", payload={"url": f"http://feed.test/{e}"})) for e in entries],
            status="ok",
            next_poll_at=self.clock.now + 60,
        )

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        self.leased += self.store.claim("owner", limit, lease_seconds=30)

    @rule(limit=st.integers(1, 4), same_text=st.booleans(), fail=st.booleans())
    def claim_settling(self, limit: int, same_text: bool, fail: bool) -> None:
        # Documents settled in the claim's transaction (stored, duplicates, retried or dead: SQLite
        # counts these per transaction, not by its trigger, migration 0012); the rest leased.
        def settle(item: Claimed) -> Transition | None:
            if item.kind != "document":
                return None
            if fail:
                return queue.failed(
                    item, ERRORS[1], permanent=False, policy=POLICY, now=self.clock.now, rand=lambda: 0.0
                )
            text = "same text" if same_text else f"text of {item.id}"
            return queue.succeeded(item, ContentResult(f"h-{text}", text))

        self.leased += self.store.claim_settling("owner", limit, 30, settle).leased

    @rule(same_text=st.booleans())
    def succeed(self, same_text: bool) -> None:
        if self.leased:
            item = self.leased.pop(0)
            text = "same text" if same_text else f"text of {item.id}"  # the same text: a duplicate
            self.store.apply([queue.succeeded(item, ContentResult(f"h-{text}", text))])

    @rule(which=st.sampled_from(ERRORS), permanent=st.booleans())
    def fail(self, which: ErrorInfo, permanent: bool) -> None:
        if self.leased:
            item = self.leased.pop(0)
            t = queue.failed(
                item, which, permanent=permanent, policy=POLICY, now=self.clock.now, rand=lambda: 0.0
            )
            self.store.apply([t])

    @rule()
    def expire_leases(self) -> None:
        self.clock.now += 31
        self.store.reap_expired(max_lease_expiries=2)
        self.leased.clear()  # their tokens are stale now

    @rule()
    def release(self) -> None:
        self.store.release("owner")
        self.leased.clear()

    @rule(stage=st.sampled_from([None, "fetch", "extract", "engine"]))
    def replay(self, stage: str | None) -> None:
        self.store.dlq_replay(DLQFilter(stage=stage))

    @rule(stage=st.sampled_from([None, "fetch", "extract", "engine"]))
    def purge(self, stage: str | None) -> None:
        self.store.dlq_purge(DLQFilter(stage=stage))

    @rule()
    def time_passes(self) -> None:
        self.clock.now += 120  # retries come due

    @invariant()
    def counters_match_the_rows(self) -> None:
        if hasattr(self.store, "compact_counters") and self.serial % 5 == 0:
            self.store.compact_counters()  # folded or not, the sums must agree
        kept, counted = kept_and_counted(self.store)
        assert kept == counted
        # What the API's backpressure and `atlas-ops queue` read agrees with the rows too.
        assert self.store.queue_stats()["queued"] == sum(
            n for (t, s, _), n in counted.items() if t == "items" and s == "queued"
        )


@pytest.fixture
def machine_clock() -> Clock:
    return Clock()


@pytest.fixture
def store_clock(machine_clock: Clock) -> Clock:
    return machine_clock


def test_the_kept_counters_always_match_the_rows(store_factory: StoreFactory, machine_clock: Clock) -> None:
    CounterMachine.factory = staticmethod(store_factory)  # type: ignore[assignment]
    CounterMachine.clock = machine_clock
    run_state_machine_as_test(
        CounterMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


def test_a_queued_url_and_a_polled_feed_item_both_leased_leave_no_negative_counter(
    any_store: Any,
) -> None:
    """The case the issue names: one queued URL item plus one from a feed poll, both leased."""
    store = any_store
    store.enqueue([NewItem(kind="url", payload={"url": "http://a.test/"})])
    feed = store.feed_add("http://feed.test/rss")
    store.feed_polled(
        str(feed["id"]),
        [("e1", NewItem(kind="url", payload={"url": "http://feed.test/1"}))],
        status="ok",
        next_poll_at=0,
    )
    assert store.counts() == {("queued", "url"): 2}
    assert len(store.claim("o", 10, 30)) == 2
    assert store.counts() == {("leased", "url"): 2}
    kept, counted = kept_and_counted(store)
    assert kept == counted


def test_migration_0007_rebuilds_counters_a_feed_poll_left_wrong(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    with sqlite3.connect(path) as conn:  # a database as the release before the fix left it
        for version, _, sql in migrations():
            if version <= 6:
                for statement in _split_sql(sql):
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 6")
        conn.execute(
            "INSERT INTO items (id, kind, state, payload, next_attempt_at, created_at, updated_at)"
            " VALUES ('a', 'url', 'leased', '{}', 0, 0, 0), ('b', 'url', 'leased', '{}', 0, 0, 0)"
        )
        # One url enqueued (counted) and one from a feed poll (not counted), both leased.
        conn.execute(
            "INSERT INTO stats_items (state, kind, n) VALUES ('queued', 'url', -1), ('leased', 'url', 2)"
        )
    store = SQLiteStore(path, synchronous="NORMAL")
    assert store.schema_version() >= 7
    kept, counted = kept_and_counted(store)
    assert kept == counted == {("items", "leased", "url"): 2}
    store.close()
