"""The kept counters (stats_items, stats_dlq, stats_contents) against COUNT(*) over the rows.

A Hypothesis state machine drives a real SQLite store through every path that inserts, moves or
deletes items (documents, URLs, feed items, feed polls, leases, successes, duplicates, retries,
deaths, expired leases, releases, DLQ replay and purge) and after EVERY step compares each kept
counter with the same figure computed from the tables, grouped the same way.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from atlas.engine import queue
from atlas.store import SQLiteStore
from atlas.store.models import Claimed, ContentResult, DLQFilter, ErrorInfo, NewItem
from atlas.store.sqlite import _split_sql, migrations

POLICY = queue.RetryPolicy(max_attempts=2, max_deaths=2)
ERRORS = [ErrorInfo("fetch", "ConnectError", "refused", "a.example"), ErrorInfo("extract", "NoText", "empty")]


def kept_and_counted(path: Path) -> tuple[dict[object, int], dict[object, int]]:
    """(kept counters, the same figures from COUNT(*)), zero rows left out of both."""
    with sqlite3.connect(path) as conn:
        kept = {("items", s, k): n for s, k, n in conn.execute("SELECT state, kind, n FROM stats_items")}
        kept |= {("dlq", s, c): n for s, c, n in conn.execute("SELECT stage, error_class, n FROM stats_dlq")}
        n, size = conn.execute("SELECT n, bytes FROM stats_contents WHERE id = 1").fetchone()
        kept |= {("contents", "n", ""): n, ("contents", "bytes", ""): size}
        counted = {
            ("items", s, k): n
            for s, k, n in conn.execute("SELECT state, kind, count(*) FROM items GROUP BY state, kind")
        }
        counted |= {
            ("dlq", s, c): n
            for s, c, n in conn.execute(
                "SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), count(*)"
                " FROM items WHERE state = 'dead' GROUP BY 1, 2"
            )
        }
        n, size = conn.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM contents").fetchone()
        counted |= {("contents", "n", ""): n, ("contents", "bytes", ""): size}
    return {k: v for k, v in kept.items() if v}, {k: v for k, v in counted.items() if v}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CounterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.clock = Clock()
        self.store = SQLiteStore(Path(self.dir.name) / "a.db", synchronous="OFF", clock=self.clock)
        self.leased: list[Claimed] = []
        self.feeds: list[str] = []
        self.serial = 0

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

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
        kept, counted = kept_and_counted(self.store.path)
        assert kept == counted
        # What the API's backpressure and `atlas-ops queue` read agrees with the rows too.
        assert self.store.queue_stats()["queued"] == sum(
            n for (t, s, _), n in counted.items() if t == "items" and s == "queued"
        )


TestCounters = CounterMachine.TestCase
TestCounters.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_a_queued_url_and_a_polled_feed_item_both_leased_leave_no_negative_counter(
    store: SQLiteStore,
) -> None:
    """The case the issue names: one queued URL item plus one from a feed poll, both leased."""
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
    kept, counted = kept_and_counted(store.path)
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
    kept, counted = kept_and_counted(store.path)
    assert kept == counted == {("items", "leased", "url"): 2}
    store.close()
