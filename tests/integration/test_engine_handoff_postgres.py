"""Cheap documents handed to the workers on PostgreSQL (issue 18; atlas.engine.handoff).

As on SQLite (test_engine_handoff.py): handed documents stay queued and unleased, out of this
store's claims; settle_handed writes each one only if its row is as it was handed. On PostgreSQL
the worker also makes each document's search index tsvector (atlas.store.tsvector), which is the
one the server's definition (atlas_tsvector) makes, and two writes may run side by side.
"""

from __future__ import annotations

from typing import Any

from atlas.engine import queue
from atlas.engine.handoff import settle_plain
from atlas.settings import Settings
from atlas.store.models import HANDOFF, ErrorInfo, NewItem, SettledDocument
from atlas.store.postgres import PostgresStore
from tests.helpers.engine import engine_thread, finished, wait_for
from tests.helpers.postgres import wipe
from tests.helpers.stores import sql_rows

PIPELINE = "atlas.pipeline:default_pipeline"


def _hand_all(store: PostgresStore, limit: int = 10) -> Any:
    return store.claim_settling("owner-1", limit, 30, lambda item: HANDOFF)


def _settled(items: Any) -> list[SettledDocument]:
    docs = [
        settle_plain(i.id, i.payload, True) for i in items
    ]  # with the tsvector, as a worker on PostgreSQL
    assert all(d is not None and d[9] is not None for d in docs)
    return [d for d in docs if d is not None]


def _enqueue(store: PostgresStore, payloads: list[dict[str, Any]]) -> list[str]:
    return [r.id for r in store.enqueue([NewItem(kind="document", payload=p) for p in payloads])]


def test_handed_documents_stay_queued_out_of_this_stores_claims_and_are_written_once(
    pg: PostgresStore,
) -> None:
    ids = _enqueue(
        pg,
        [
            {"content": "alpha beta"},
            {
                "content": "# A Title\n\ngamma-delta",
                "content_type": "text/markdown",
                "url": "https://x.test/a",
            },
            {"content": "alpha beta"},  # the first's text again
        ],
    )
    result = _hand_all(pg)
    assert [i.id for i in result.handed] == ids and not result.leased and not result.settled
    assert sql_rows(pg, "SELECT state, lease_owner, attempts FROM items") == [("queued", None, 0)] * 3
    assert _hand_all(pg).chosen == 0  # skipped while handed
    other = PostgresStore(pg.url, pool_size=1)  # another engine's store does not know of them
    try:
        assert other.claim_settling("owner-2", 10, 30, lambda item: None).chosen == 3
        other.release("owner-2")
    finally:
        other.close()
    handed = result.handed
    applied = pg.settle_handed(_settled(handed), {i.id: (i.attempts, i.kind) for i in handed})
    assert applied == {ids[0]: "done", ids[1]: "done", ids[2]: "duplicate"}
    rows = sql_rows(
        pg, "SELECT id, state, attempts, duplicate_of, lease_token, done_at IS NOT NULL FROM items"
    )
    assert sorted(rows) == sorted(
        [
            (ids[0], "done", 1, None, None, True),
            (ids[1], "done", 1, None, None, True),
            (ids[2], "duplicate", 1, ids[0], None, True),
        ]
    )
    assert sorted(sql_rows(pg, "SELECT item_id, outcome, lease_token FROM completions")) == sorted(
        [(ids[0], "done", None), (ids[1], "done", None), (ids[2], "duplicate", None)]
    )
    # The workers' tsvectors are the server's own definition's, title and all.
    assert sql_rows(pg, "SELECT count(*) FROM contents WHERE tsv = atlas_tsvector(title, text)") == [(2,)]
    titled = pg.get_content(ids[1])
    assert titled is not None and titled["title"] == "A Title" and titled["url"] == "https://x.test/a"
    assert [h.item_id for h in pg.search("alpha")[0]] == [ids[0]]
    assert [h.item_id for h in pg.search("title delta")[0]] == [ids[1]]
    counts = pg.counts()
    assert counts.get(("done", "document")) == 2 and counts.get(("duplicate", "document")) == 1
    pg.recount_items()  # the counters the triggers kept are the ones the rows give
    assert pg.counts() == counts
    assert _hand_all(pg).chosen == 0  # nothing left, and nothing still handed


def test_a_result_for_a_document_another_engine_took_meanwhile_is_dropped(pg: PostgresStore) -> None:
    taken, retried, untouched = _enqueue(pg, [{"content": f"text {i}"} for i in range(3)])
    handed = _hand_all(pg).handed
    other = PostgresStore(pg.url, pool_size=1)
    try:
        leased = {c.id: c for c in other.claim("owner-2", 10, 30)}
        error = ErrorInfo("fetch", "Boom", "once")
        policy = queue.RetryPolicy(
            max_attempts=5, backoff_base_seconds=0, backoff_cap_seconds=0, max_deaths=2
        )
        other.apply(
            [
                queue.failed(
                    leased[retried], error, permanent=False, policy=policy, now=0.0, rand=lambda: 0.0
                ),
                queue.released(leased[untouched], 0.0),
            ]
        )
    finally:
        other.close()
    applied = pg.settle_handed(_settled(handed), {i.id: (i.attempts, i.kind) for i in handed})
    assert applied == {untouched: "done"}  # queued, unleased, at the attempts it was handed at
    assert dict(sql_rows(pg, "SELECT id, state FROM items")) == {
        taken: "leased",
        retried: "queued",
        untouched: "done",
    }
    assert sql_rows(pg, "SELECT item_id FROM contents") == [(untouched,)]
    assert [i.id for i in _hand_all(pg).handed] == [retried]  # none is handed any more


class _CountingStore(PostgresStore):
    """A real PostgreSQL store that counts the documents settle_handed was given."""

    handed_written = 0

    def settle_handed(self, docs: Any, attempts: Any) -> dict[str, str]:
        self.handed_written += len(docs)
        return super().settle_handed(docs, attempts)


def test_the_engine_hands_documents_to_its_workers_and_ends_each_once(
    settings: Settings, postgres_url: str
) -> None:
    store = _CountingStore(postgres_url, pool_size=4)
    wipe(store)
    fast = settings.replace(workers=2, poll_interval_ms=10)
    try:
        with engine_thread(fast, store, PIPELINE) as engine:
            wait_for(lambda: sum(w.ready for w in engine.workers.live()) == 2, 30, "2 workers ready")
            n = 600  # each text twice: 300 stored, 300 duplicates
            ids = _enqueue(store, [{"content": f"document {i % 300} " + "words " * 40} for i in range(n)])
            (blank,) = _enqueue(store, [{"content": "  \n "}])  # no text: settled inline, dead
            wait_for(lambda: finished(store) == len(ids) + 1, 60, "every document to finish")
        assert store.handed_written == 600  # each written once, from a worker's results
        counts = store.counts()
        assert counts.get(("done", "document")) == 300 and counts.get(("duplicate", "document")) == 300
        assert sql_rows(store, "SELECT count(*), count(DISTINCT item_id) FROM completions") == [(601, 601)]
        assert sql_rows(store, "SELECT count(*) FROM contents WHERE tsv = atlas_tsvector(title, text)") == [
            (300,)
        ]
        empty = store.get_item(blank)
        assert empty is not None and empty.state == "dead"
    finally:
        store.close()
