"""Cheap documents settled in the claim's own transaction (atlas.engine.inline, issue 18).

On both backends: Store.claim_settling settles what `settle` decides and leases the rest; a
failure while settling leaves every chosen item queued and nothing stored. Through a real engine
(default pipeline, real workers for the rest): plain-text and Markdown documents are settled by
the engine without a lease, HTML and large documents still go through a worker, and both end
the same way (text, title, dead-lettering of an empty document)."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from atlas.engine import queue
from atlas.pipeline.document import content_hash
from atlas.settings import Settings
from atlas.store.models import Claimed, ClaimSettled, ContentResult, ErrorInfo, NewItem, Transition
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, finished, wait_for
from tests.helpers.stores import sql_rows

PIPELINE = "atlas.pipeline:default_pipeline"


def _done(item: Claimed) -> Transition:
    text = item.payload["content"]
    return queue.succeeded(item, ContentResult(content_hash=content_hash(text), text=text))


def _completion_tokens(store: Any) -> dict[str, Any]:
    return dict(sql_rows(store, "SELECT item_id, lease_token FROM completions"))


def test_claim_settling_settles_some_and_leases_the_rest(any_store: Any) -> None:
    ids = [
        r.id
        for r in any_store.enqueue(
            [NewItem(kind="document", payload={"content": f"text {i}"}) for i in range(4)]
            + [NewItem(kind="document", payload={"content": "text 0"})]  # the same text again
            + [NewItem(kind="url", payload={"url": "http://x.test/"})]
        )
    ]
    result = any_store.claim_settling("owner-1", 10, 30, lambda i: _done(i) if i.kind == "document" else None)
    assert [c.id for c in result.leased] == [ids[5]]
    assert sorted(i.id for _, i in result.settled) == sorted(ids[:5])
    # One of the two with the same text is the other's duplicate (which one: the claim's order).
    assert sorted(result.applied.values()) == ["done"] * 4 + ["duplicate"]
    assert {result.applied[ids[0]], result.applied[ids[4]]} == {"done", "duplicate"}
    states = {i: any_store.get_item(i).state for i in ids}
    assert states == {**result.applied, ids[5]: "leased"}
    assert sql_rows(any_store, f"SELECT lease_owner FROM items WHERE id = '{ids[5]}'") == [("owner-1",)]
    assert len(any_store.search("text", limit=10)[0]) == 4
    assert set(_completion_tokens(any_store)) == set(ids[:5])  # one completion each
    counts = any_store.counts()
    assert counts[("done", "document")] == 4 and counts[("duplicate", "document")] == 1
    assert counts[("leased", "url")] == 1 and counts.get(("queued", "document"), 0) == 0
    # The leased one is applied as any claim's item is.
    (url,) = result.leased
    assert any_store.apply([queue.released(url, 0.0)]) == {url.id: "released"}
    assert any_store.claim_settling("owner-1", 10, 30, lambda i: None).leased[0].id == url.id


def test_claim_settling_hands_out_the_items_claim_would(any_store: Any) -> None:
    # SQLite's claim_settling reads its rows as tuples by position (itemrows.claimed_from_tuple):
    # the same items, field for field, as claim() makes of its sqlite3.Row / dict rows.
    any_store.enqueue(
        [
            NewItem(
                kind="document",
                payload={"content": "a", "n": [1, 2]},
                source="src",
                priority=3,
                metadata={"m": 1},
                trace_context="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
            ),
            NewItem(kind="url", payload={"url": "http://x.test/"}),
        ]
    )
    settled = any_store.claim_settling("o", 10, 30, lambda i: None)
    assert any_store.apply([queue.released(i, 0.0) for i in settled.leased])
    claimed = any_store.claim("o", 10, 30)
    assert len(claimed) == 2
    token = claimed[0].token
    assert [replace(c, token=token) for c in settled.leased] == claimed


def test_sqlites_narrow_settle_update_writes_the_rows_the_general_transition_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # settle_done (a stored or duplicate document settled inline) leaves out the columns the
    # general transition would leave as they are: the same database either way, counters included.
    import shutil

    from atlas.store import sqlite_queue, transitions

    def settle(item: Claimed) -> Transition | None:
        if item.payload.get("content") == "fails":
            error = ErrorInfo("normalise", "NoText", "no text")
            return queue.failed(
                item, error, permanent=True, policy=queue.RetryPolicy(), now=5.0, rand=lambda: 0
            )
        if item.kind != "document":
            return None
        text = item.payload["content"]
        # One with conditional-request validators: they are written on either path.
        validators = {"url": "http://x.test/page", "etag": '"e1"'} if text == "fetched" else {}
        result = ContentResult(content_hash=content_hash(text), text=text, title="T", **validators)
        return queue.succeeded(item, result, {"decode": 0.001, "normalise": 0.002})

    seed = SQLiteStore(tmp_path / "seed.db", clock=lambda: 1_000.0)
    texts = ["one", "two", "one", "fails", "fetched"]
    seed.enqueue([NewItem(kind="document", payload={"content": t}, metadata={"n": 1}) for t in texts])
    seed.enqueue([NewItem(kind="url", payload={"url": "http://x.test/"})])
    seed.close()
    tables = (
        "SELECT * FROM items ORDER BY id",
        "SELECT * FROM stats_items ORDER BY 1, 2",
        "SELECT * FROM completions",
        "SELECT * FROM fetch_validators",
    )
    found = []
    for narrow in (True, False):
        path = tmp_path / f"{narrow}.db"
        shutil.copy(tmp_path / "seed.db", path)
        if not narrow:
            monkeypatch.setattr(
                sqlite_queue,
                "TransitionRows",
                lambda now, settling, split_done: transitions.TransitionRows(now, settling),
            )
        store = SQLiteStore(path, clock=lambda: 2_000.0)
        result = store.claim_settling("o", 10, 30, settle)
        assert sorted(result.applied.values()) == ["dead", "done", "done", "done", "duplicate"]
        with store._write() as conn:  # the url's lease token is the claim's own, random
            conn.execute("UPDATE items SET lease_token = 'token' WHERE lease_token IS NOT NULL")
        rows = [sql_rows(store, q) for q in tables]
        store.close()
        found.append([[tuple(r) for r in t] for t in rows])
    narrow_rows, general_rows = found
    counted = sql_rows(SQLiteStore(tmp_path / "True.db"), "SELECT counted FROM items")
    assert sorted(c for (c,) in counted) == [0, 1, 1, 1, 1, 1]  # flipped: the five settled
    assert len(narrow_rows[3]) == 1  # the validators
    assert narrow_rows == general_rows


def test_past_its_lease_limit_a_settling_claim_leaves_the_rest_queued(any_store: Any) -> None:
    """The engine's second claim in line may lease only what the budget has left: the items it
    chose and could neither settle nor lease stay queued for the next claim."""
    urls = [
        r.id
        for r in any_store.enqueue(
            [NewItem(kind="url", payload={"url": f"http://x.test/{i}"}) for i in range(3)]
        )
    ]
    docs = [r.id for r in any_store.enqueue([NewItem(kind="document", payload={"content": "text"})])]
    result = any_store.claim_settling(
        "owner-1", 10, 30, lambda i: _done(i) if i.kind == "document" else None, lease_limit=1
    )
    assert result.chosen == 4 and [i.id for _, i in result.settled] == docs
    assert [c.id for c in result.leased] == urls[:1]
    assert {i: any_store.get_item(i).state for i in urls} == {
        urls[0]: "leased",
        urls[1]: "queued",
        urls[2]: "queued",
    }
    assert any_store.counts()[("queued", "url")] == 2
    assert sorted(c.id for c in any_store.claim("owner-2", 10, 30)) == sorted(urls[1:])


def test_a_failure_while_settling_leaves_every_chosen_item_queued(any_store: Any) -> None:
    ids = [
        r.id
        for r in any_store.enqueue(
            [NewItem(kind="document", payload={"content": f"text {i}"}) for i in range(3)]
        )
    ]
    seen: list[str] = []

    def settle(item: Claimed) -> Transition | None:
        seen.append(item.id)
        if len(seen) == 3:
            raise RuntimeError("the engine died here (injected)")
        return _done(item)

    with pytest.raises(RuntimeError):
        any_store.claim_settling("owner-1", 10, 30, settle)
    assert len(seen) == 3
    assert {any_store.get_item(i).state for i in ids} == {"queued"}
    assert any_store.search("text", limit=10)[0] == []
    assert _completion_tokens(any_store) == {}
    assert any_store.counts()[("queued", "document")] == 3
    assert len(any_store.claim("owner-2", 10, 30)) == 3  # all of them still there to take


def _documents(store: SQLiteStore) -> dict[str, str]:
    big = "word " * 2_000  # 10,000 characters: over the limit set below
    docs = {
        "plain": {"content": "plain   text\r\nsecond line"},
        "markdown": {"content": "# A Title\n\nbody text", "content_type": "text/markdown"},
        "html": {"content": "<title>Page</title><p>html body</p>", "content_type": "text/html"},
        "big": {"content": big},
        "empty": {"content": "   \n  "},
    }
    results = store.enqueue([NewItem(kind="document", payload=p) for p in docs.values()])
    return {name: r.id for name, r in zip(docs, results, strict=True)}


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "workers-only"])
def test_the_engine_settles_cheap_documents_itself_and_the_rest_in_workers(
    settings: Settings, tmp_path: Path, inline: bool
) -> None:
    store = SQLiteStore(tmp_path / "inline.db", synchronous="NORMAL")
    ids = _documents(store)
    limit = 4_096 if inline else 0
    fast = settings.replace(workers=1, poll_interval_ms=10, inline_document_max_chars=limit)
    with engine_thread(fast, store, PIPELINE) as engine:
        wait_for(lambda: finished(store) == len(ids), 60, "every document to finish")
        tokens = _completion_tokens(store)
        # Settled inline: never leased, so no lease token on the completion; through a worker:
        # the lease's token.
        cheap = {ids["plain"], ids["markdown"], ids["empty"]}
        assert {i for i, t in tokens.items() if t is None} == (cheap if inline else set())
        # The rows are final a moment before the loop counts their commit (its callback).
        wait_for(
            lambda: (
                engine.metrics.registry.get_sample_value(
                    "atlas_engine_items_processed_total", {"kind": "document", "outcome": "done"}
                )
                == 4
            ),
            30,
            "the engine to count the 4 documents done",
        )
        stage_runs = engine.metrics.registry.get_sample_value(
            "atlas_engine_stage_duration_seconds_count", {"stage": "normalise"}
        )
        assert stage_runs == 5

        # Settled or committed, each transition is counted by the commit metrics (the database
        # latency alert reads atlas_engine_commit_duration_seconds), the same either way.
        # (Observed on the store thread once the transaction has committed: waited for.)
        def committed() -> float | None:
            return engine.metrics.registry.get_sample_value("atlas_engine_commit_batch_size_sum")

        wait_for(lambda: committed() == len(ids), 10, f"{len(ids)} transitions in the commit metrics")
        commits = engine.metrics.registry.get_sample_value("atlas_engine_commit_duration_seconds_count")
        assert commits is not None and commits >= 1
    # The same outcome either way.
    plain = store.get_content(ids["plain"])
    assert plain is not None and plain["text"] == "plain text\nsecond line"
    markdown = store.get_content(ids["markdown"])
    assert markdown is not None and markdown["title"] == "A Title"
    html = store.get_content(ids["html"])
    assert html is not None and html["title"] == "Page"
    empty = store.get_item(ids["empty"])
    assert empty is not None and empty.state == "dead" and empty.dead_reason == "permanent"
    assert empty.attempts == 1 and empty.last_error is not None and empty.last_error.stage == "normalise"
    assert store.get_item(ids["big"]).state == "done"  # type: ignore[union-attr]
    store.close()


class _GatedStore(SQLiteStore):
    """A real SQLite store whose third claim_settling waits for `gate`, and which counts the
    claims that start while the engine's loop is inside a forced flush (`flushing`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.gate = threading.Event()
        self.calls = 0
        self.flushing = False
        self.during_flush = 0

    def claim_settling(
        self, owner: str, limit: int, lease_seconds: float, settle: Any, lease_limit: int | None = None
    ) -> ClaimSettled:
        self.calls += 1
        if self.flushing:
            self.during_flush += 1
        if self.calls == 3:
            self.gate.wait(30)
        return super().claim_settling(owner, limit, lease_seconds, settle, lease_limit)


def test_a_forced_flush_does_not_keep_claiming_while_documents_stream(
    settings: Settings, tmp_path: Path
) -> None:
    """A worker's death flushes the commits at once, waiting for the store thread. A claim that
    ends meanwhile must not ask for the next one: the loop (heartbeats, results, the watchdog)
    would stay in that wait until the whole stream of cheap documents had been settled."""
    store = _GatedStore(tmp_path / "flush.db")
    count = 400
    store.enqueue([NewItem(kind="document", payload={"content": f"doc {i}"}) for i in range(count)])
    fast = settings.replace(
        workers=2, poll_interval_ms=10, claim_batch_size=8, inline_document_max_chars=4_096
    )
    with engine_thread(fast, store, PIPELINE) as engine:
        wait_for(lambda: store.calls >= 3, 60, "the third claim to start (and wait)")
        real_wait_idle = engine.store_thread.wait_idle

        def wait_idle() -> None:
            store.flushing = True
            try:
                real_wait_idle()
            finally:
                store.flushing = False

        engine.store_thread.wait_idle = wait_idle  # type: ignore[method-assign]
        os.kill(engine.workers.live()[0].process.pid, signal.SIGKILL)  # a forced flush follows
        wait_for(lambda: store.flushing, 60, "the loop to flush after the worker's death")
        store.gate.set()
        wait_for(lambda: finished(store) == count, 60, "every document to finish")
    # At most the one claim already queued behind the waiting one ran inside the flush.
    assert store.during_flush <= 1
    store.close()


def test_one_claim_settles_at_most_its_share_of_characters() -> None:
    """The claim's transaction holds the write lock while it settles: past CHARS_PER_CLAIM, the
    claim's other documents are leased to the workers."""
    import random
    import time

    from atlas.engine.inline import CHARS_PER_CLAIM, InlineDocuments

    policy = queue.RetryPolicy(max_attempts=3, backoff_base_seconds=1, backoff_cap_seconds=10, max_deaths=2)
    documents = InlineDocuments(65_536, policy, time.time, random.random)
    size = 60_000
    items = [
        Claimed(f"i{n}", "document", None, 0, {"content": "x" * size}, None, 0, 0, False, None, 0.0, "t")
        for n in range(CHARS_PER_CLAIM // size + 5)
    ]
    settling = documents.claim()
    settled = [settling(item) for item in items]
    first = -(-CHARS_PER_CLAIM // size)  # the one that crosses the cap is still settled
    assert all(t is not None for t in settled[:first]) and all(t is None for t in settled[first:])
    assert documents.claim()(items[-1]) is not None  # the next claim starts afresh


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "plain   text\r\n\r\n\r\nsecond line"},
        {"content": "# A Title #\n\nbody text", "content_type": "text/markdown"},
        {"content": "no heading here", "content_type": "text/markdown", "title": "Given"},
        {"content": "with a url", "url": "https://example.test/a", "title": "T"},
    ],
)
def test_a_settled_document_is_what_the_workers_pipeline_makes_of_it(payload: dict[str, Any]) -> None:
    """Untraced, a stored document skips process()'s machinery (atlas.engine.inline): the same
    result and stage timings as the pipeline run through process() in a worker."""
    import asyncio
    import random
    import time

    from opentelemetry import trace

    from atlas.engine.inline import InlineDocuments
    from atlas.engine.messages import Done, Job
    from atlas.engine.worker import process
    from atlas.pipeline import default_pipeline

    policy = queue.RetryPolicy(max_attempts=3, backoff_base_seconds=1, backoff_cap_seconds=10, max_deaths=2)
    item = Claimed("i1", "document", None, 0, payload, None, 0, 0, False, None, 0.0, "t")
    settled = InlineDocuments(65_536, policy, time.time, random.random).claim()(item)
    assert settled is not None and settled.state == "done" and settled.timings is not None
    worker = asyncio.run(process(default_pipeline(), Job.of(item), trace.NoOpTracer()))
    assert isinstance(worker, Done)
    assert settled.result == worker.result
    assert set(settled.timings) == set(worker.timings) == {"decode", "normalise"}


class _SettlingBreaks(SQLiteStore):
    """The real store; its first settling claim fails inside `settle` with an error no stage
    would raise (a bug in the engine's settling), as the transaction runs."""

    broke = False

    def claim_settling(
        self, owner: str, limit: int, lease_seconds: float, settle: Any, lease_limit: int | None = None
    ) -> Any:
        def breaking(item: Claimed) -> Transition | None:
            if not self.broke:
                self.broke = True
                raise RuntimeError("settling broke (injected)")
            return settle(item)  # type: ignore[no-any-return]

        return super().claim_settling(owner, limit, lease_seconds, breaking, lease_limit)


def test_a_document_settling_cannot_store_fails_as_in_a_worker_and_a_broken_settling_hands_over(
    settings: Settings, tmp_path: Path
) -> None:
    """A lone surrogate passes decoding and normalising but not hashing: the attempt fails as it
    does in a worker (the engine goes on). Settling that raises by itself undoes its claim and
    leaves every item to the workers, instead of killing the engine on each restart."""
    fast = settings.replace(workers=1, poll_interval_ms=10, max_attempts=1)
    store = SQLiteStore(tmp_path / "surrogate.db", synchronous="NORMAL")
    bad, good = (
        r.id
        for r in store.enqueue(
            [
                NewItem("document", {"content": "bad \ud800 text"}),
                NewItem("document", {"content": "good text"}),
            ]
        )
    )
    with engine_thread(fast, store, PIPELINE):
        wait_for(lambda: finished(store) == 2, 60, "both documents to finish")
    failed = store.get_item(bad)
    assert failed is not None and failed.state == "dead" and failed.last_error is not None
    assert (failed.last_error.stage, failed.last_error.error_class) == ("normalise", "UnicodeEncodeError")
    assert _completion_tokens(store)[good] is None  # settled inline
    store.close()

    breaks = _SettlingBreaks(tmp_path / "breaks.db", synchronous="NORMAL")
    ids = [r.id for r in breaks.enqueue([NewItem("document", {"content": f"text {i}"}) for i in range(20)])]
    with engine_thread(fast, breaks, PIPELINE) as engine:
        wait_for(lambda: finished(breaks) == 20, 60, "every document to finish through the workers")
        assert breaks.broke and engine.inline is None
    tokens = _completion_tokens(breaks)
    assert set(tokens) == set(ids) and None not in tokens.values()  # all leased to workers
    breaks.close()


def test_two_engines_settling_on_one_postgresql_database_finish_each_document_once(
    postgres_url: str, settings: Settings
) -> None:
    """Two engines, each with two store threads, settle documents from one PostgreSQL queue at
    once (FOR UPDATE SKIP LOCKED): every document is settled by exactly one of them, and of the
    texts sent twice one copy is stored and the other is its duplicate."""
    from atlas.store.postgres import PostgresStore
    from tests.helpers.postgres import migrated_and_empty

    url = migrated_and_empty(postgres_url)
    stores = [PostgresStore(url, pool_size=4) for _ in range(2)]
    try:
        n = 3_000
        texts = [f"text {i % 2_000}" for i in range(n)]  # 1,000 texts twice
        ids = [r.id for r in stores[0].enqueue([NewItem("document", {"content": t}) for t in texts])]
        fast = settings.replace(database_url=url, workers=1, poll_interval_ms=10, claim_batch_size=64)
        with (
            engine_thread(fast, stores[0], PIPELINE) as first,
            engine_thread(fast, stores[1], PIPELINE) as second,
        ):

            def shares() -> list[float]:
                return [
                    sum(
                        engine.metrics.registry.get_sample_value(
                            "atlas_engine_items_processed_total", {"kind": "document", "outcome": outcome}
                        )
                        or 0.0
                        for outcome in ("done", "duplicate")
                    )
                    for engine in (first, second)
                ]

            wait_for(lambda: finished(stores[0]) == n, 120, "every document to finish")
            # The rows are final a moment before the loop counts their commit (its callback).
            wait_for(lambda: sum(shares()) >= n, 30, "the engines to count every document")
            counted = shares()
        assert sum(counted) == n and min(counted) > 0, counted  # both settled a share, none twice
        counts = stores[0].counts()
        assert counts == {("done", "document"): 2_000, ("duplicate", "document"): 1_000}
        completions = stores[0].completions()
        assert set(completions) == set(ids) and max(completions.values()) == 1
        owners = sql_rows(stores[0], "SELECT count(*), count(DISTINCT content_hash) FROM contents")
        assert owners == [(2_000, 2_000)]
    finally:  # a failure must not leave pooled connections for a later test's garbage collection
        for store in stores:
            store.close()


def test_work_notified_while_a_short_claim_runs_is_claimed_at_once_not_at_the_next_poll(
    postgres_url: str, settings: Settings
) -> None:
    """An item settled inline is done before its claim's callback reaches the loop, so the
    producer's next enqueue (and its NOTIFY) can come first: the short claim must not then put the
    next claim off until the poll (60 s here). The real store, held after its first settling
    commit until the loop has taken the notification."""
    import threading

    from atlas.store.postgres import PostgresStore
    from tests.helpers.postgres import migrated_and_empty

    class HeldAfterSettling(PostgresStore):
        settled_once = threading.Event()
        go_on = threading.Event()

        def claim_settling(
            self, owner: str, limit: int, lease_seconds: float, settle: Any, lease_limit: int | None = None
        ) -> Any:
            result = super().claim_settling(owner, limit, lease_seconds, settle, lease_limit)
            if result.settled and not self.settled_once.is_set():
                self.settled_once.set()
                self.go_on.wait(30)
            return result

    store = HeldAfterSettling(migrated_and_empty(postgres_url), pool_size=4)
    slow_poll = settings.replace(database_url=store.url, workers=1, poll_interval_ms=60_000)
    try:
        with engine_thread(slow_poll, store, PIPELINE) as engine:  # type: ignore[arg-type]
            store.enqueue([NewItem("document", {"content": "the first"})])
            assert store.settled_once.wait(30), "the first item was never settled"
            store.enqueue([NewItem("document", {"content": "the second, while the claim is out"})])
            wait_for(lambda: engine._work_since_claim, 10, "the loop to take the notification")
            store.go_on.set()
            wait_for(lambda: finished(store) == 2, 20, "the second item, well before the poll")  # type: ignore[arg-type]
    finally:
        store.go_on.set()
        store.close()


def test_settled_contents_are_stored_whole_with_or_without_their_optional_fields(any_store: Any) -> None:
    """A claim whose texts all lack title, URL, language, author and date stores them by
    insert_content_plain on SQLite, any other by insert_content: the same rows either way, with
    the text's size in UTF-8 bytes, and every text searchable."""

    def settle(item: Claimed) -> Transition:
        text = item.payload["content"]
        extra = {"title": "Titled", "url": "http://x.test/t", "language": "en"} if "titled" in text else {}
        result = ContentResult(content_hash=content_hash(text), text=text, content_type="text/plain", **extra)
        return queue.succeeded(item, result)

    plain = ["plain zebra", "plain café ünïcode"]
    any_store.enqueue([NewItem(kind="document", payload={"content": t}) for t in plain])
    assert len(any_store.claim_settling("o", 10, 30, settle).settled) == 2
    mixed = ["mixed yak", "titled gnu"]
    any_store.enqueue([NewItem(kind="document", payload={"content": t}) for t in mixed])
    assert len(any_store.claim_settling("o", 10, 30, settle).settled) == 2
    rows = sql_rows(
        any_store,
        "SELECT text, content_type, title, canonical_url, language, author, published, url, bytes"
        " FROM contents ORDER BY text",
    )
    assert rows == sorted(
        [
            (t, "text/plain", None, None, None, None, None, None, len(t.encode("utf-8")))
            for t in plain + mixed[:1]
        ]
        + [("titled gnu", "text/plain", "Titled", None, "en", None, None, "http://x.test/t", 10)]
    )
    for word in ("zebra", "café", "yak", "gnu"):
        assert len(any_store.search(word, limit=5)[0]) == 1, word
