"""URL and feed items end to end: real engine, real worker processes, a real origin, on real SQLite
and real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from atlas.pipeline import build_fetcher
from atlas.pipeline.feeds import FeedPoller
from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, finished, wait_for
from tests.helpers.origin import Origin, origin_resolver, running_origin

WEB = "tests.helpers.pipelines:web"


@pytest.fixture
def store(any_store: SQLiteStore) -> SQLiteStore:
    """Every test here runs on both backends (`any_store`)."""
    return any_store


@pytest.fixture
def origin() -> Iterator[Origin]:
    with running_origin() as o:
        yield o


@pytest.fixture
def web(settings: Settings) -> Settings:
    return settings.replace(
        workers=1,
        worker_concurrency=8,
        poll_interval_ms=10,
        max_attempts=2,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
        fetch_allow_hosts=("127.0.0.1",),
        fetch_total_timeout_seconds=3.0,
        fetch_read_timeout_seconds=1.0,
        host_rate_per_second=1000,
        host_rate_burst=1000,
    )


def url(u: str) -> NewItem:
    return NewItem(kind="url", payload={"url": u})


def test_url_items_are_fetched_extracted_deduplicated_and_searchable(
    web: Settings, store: SQLiteStore, origin: Origin
) -> None:
    good = [origin.url(f"h{i % 3}.test", f"/article/{i}") for i in range(6)]
    tracked = origin.url("h0.test", "/article/0?utm_source=newsletter&utm_medium=email")
    same_a, same_b = origin.url("h5.test", "/same"), origin.url("h6.test", "/same")
    bad = {
        "pdf": origin.url("h7.test", "/pdf"),
        "404": origin.url("h7.test", "/status?code=404"),
        "empty": origin.url("h7.test", "/empty"),
        "ssrf": "http://169.254.169.254/latest/meta-data/",
    }
    ids = [r.id for r in store.enqueue([url(u) for u in good])]
    (tracked_id, a_id) = [r.id for r in store.enqueue([url(tracked), url(same_a)])]
    (b_id,) = [r.id for r in store.enqueue([url(same_b)])]
    bad_ids = dict(zip(bad, [r.id for r in store.enqueue([url(u) for u in bad.values()])], strict=True))
    total = len(good) + 3 + len(bad)
    with engine_thread(web, store, WEB):
        wait_for(lambda: finished(store) == total, 60, f"{total} items to finish")

    # ids[0] and the tracked copy of it race (concurrency 8): whichever is stored first wins.
    first, tracked_item = store.get_item(ids[0]), store.get_item(tracked_id)
    assert first is not None and tracked_item is not None
    assert {(first.state, first.duplicate_of), (tracked_item.state, tracked_item.duplicate_of)} in (
        {("done", None), ("duplicate", ids[0])},
        {("done", None), ("duplicate", tracked_id)},
    )
    for item_id in ids[1:]:
        item = store.get_item(item_id)
        assert item is not None and item.state == "done", item
    content = store.get_content(ids[4])
    assert content is not None
    assert content["title"] == "Story 4 about the library" and content["author"] == "Jane Reporter"
    assert content["canonical_url"] == "http://h1.test/article/4" and content["language"] == "en"
    assert "Subscribe to our newsletter" not in content["text"]

    a, b = store.get_item(a_id), store.get_item(b_id)  # the same text at two URLs: the first stored wins
    assert a is not None and b is not None
    assert {(a.state, a.duplicate_of), (b.state, b.duplicate_of)} in (
        {("done", None), ("duplicate", a_id)},
        {("done", None), ("duplicate", b_id)},
    )

    expect = {"pdf": "content type application/pdf", "404": "HTTP 404", "empty": "no extractable main text"}
    expect["ssrf"] = "is link-local (SSRF guard"
    for name, item_id in bad_ids.items():
        item = store.get_item(item_id)
        assert item is not None and (item.state, item.dead_reason) == ("dead", "permanent"), item
        assert item.last_error is not None and expect[name] in item.last_error.message

    hits, cursor = store.search("residents waited library", limit=4)
    assert len(hits) == 4 and cursor is not None
    assert all("**" in h.snippet for h in hits)
    more, end = store.search("residents waited library", limit=4, cursor=cursor)
    assert {h.item_id for h in hits}.isdisjoint(h.item_id for h in more)
    assert len(hits) + len(more) == 7 and end is None  # six articles and the shared page
    (top,), _ = store.search("story 4 library", limit=1)
    assert top.item_id == ids[4]  # the title match ranks first
    assert store.search('"unbalanced AND (', limit=5) == ([], None)  # syntax is searched as words


def poll(poller: FeedPoller) -> int:
    async def once() -> int:
        try:
            return await poller.poll_due()
        finally:
            await poller.fetcher.aclose()  # its connections belong to this event loop

    return asyncio.run(once())


def test_feeds_enqueue_only_new_entries_honour_etags_and_back_off_when_failing(
    web: Settings, store: SQLiteStore, origin: Origin
) -> None:
    clock = [1_000_000.0]
    store.clock = lambda: clock[0]
    rss, atom_url = origin.url("h1.test", "/feed.rss"), origin.url("h2.test", "/feed.atom")
    store.enqueue([NewItem(kind="feed", payload={"url": rss, "poll_interval_seconds": 60.0})])
    store.feed_add(atom_url, 120.0)
    broken = store.feed_add(origin.url("h3.test", "/notafeed"), 60.0)
    assert {f["url"] for f in store.feed_list()} == {rss, atom_url, broken["url"]}

    fetcher = build_fetcher(web, resolver=origin_resolver)
    poller = FeedPoller(store, fetcher, clock=lambda: clock[0], rand=lambda: 0.5)
    assert poll(poller) == 3
    urls = {i.payload["url"] for i in store.list_items(kind="url")}
    assert urls == {origin.url(f"h{h}.test", f"/article/{n}") for h in (1, 2) for n in range(3)}
    feeds = {f["url"]: f for f in store.feed_list()}
    assert feeds[rss]["last_status"] == "ok" and feeds[rss]["etag"]
    assert feeds[broken["url"]]["last_status"] == "error" and feeds[broken["url"]]["failures"] == 1
    assert "not a valid feed" in feeds[broken["url"]]["last_error"]

    clock[0] += 61
    assert poll(poller) == 2  # rss (60 s) and the broken one, which waits at least half its interval
    assert {f["url"]: f for f in store.feed_list()}[rss]["last_status"] == "not_modified"
    assert len(store.list_items(kind="url")) == 6

    origin.feed_entries = range(0, 5)  # two new stories: a new ETag
    clock[0] += 121
    poll(poller)
    urls = [i.payload["url"] for i in store.list_items(kind="url")]
    assert len(urls) == 10 and len(set(urls)) == 10  # only the new entries of each feed
    failing = {f["url"]: f for f in store.feed_list()}[broken["url"]]
    assert failing["failures"] >= 2 and failing["next_poll_at"] > clock[0]

    # The feed item itself and the entries' pages flow through the engine into search.
    store.clock = time.time
    with engine_thread(web, store, WEB):
        wait_for(lambda: finished(store) == 11, 60, "the feed item and 10 pages to finish")
    counts = store.counts()
    assert counts[("done", "url")] == 10 and counts[("done", "feed")] == 1
    hits, _ = store.search("story 3 library")
    assert {h.url for h in hits[:2]} == {
        origin.url("h1.test", "/article/3"),
        origin.url("h2.test", "/article/3"),
    }
    assert store.feed_delete(broken["id"]) and not store.feed_delete(broken["id"])


def test_a_url_fetched_before_is_fetched_conditionally_and_a_304_is_a_duplicate(
    web: Settings, store: SQLiteStore, origin: Origin
) -> None:
    page = origin.url("h4.test", "/etagged/1")
    (first,) = [r.id for r in store.enqueue([url(page)])]
    with engine_thread(web, store, WEB):
        wait_for(lambda: finished(store) == 1, 60, "the first fetch")
        (again,) = [r.id for r in store.enqueue([url(page)])]
        wait_for(lambda: finished(store) == 2, 60, "the second fetch")
    assert origin.not_modified == 1  # the second request carried If-None-Match and got a 304
    item = store.get_item(again)
    assert item is not None and (item.state, item.duplicate_of) == ("duplicate", first)
    stored = store.get_content(first)
    assert stored is not None and "Paragraph 1 of story 501" in stored["text"]
