"""Search and feeds over HTTP, and url/feed items accepted by POST /v1/items (real uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from atlas.settings import Settings
from atlas.store.models import ContentResult, Transition
from tests.helpers.api import Api, running_api

pytestmark = pytest.mark.both_backends


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with running_api(settings) as running:
        yield running


def store_text(api: Api, texts: list[str]) -> list[str]:
    """Put contents in the store the way the engine does: claim, then apply a done transition."""
    from atlas.pipeline.document import content_hash
    from atlas.store.models import NewItem

    ids = [
        r.id
        for r in api.store.enqueue(
            [NewItem(kind="url", payload={"url": f"http://x.test/{i}"}) for i in range(len(texts))]
        )
    ]
    claimed = {c.id: c for c in api.store.claim("test", len(ids), 30)}
    api.store.apply(
        [
            Transition(
                i,
                claimed[i].token,
                "done",
                "done",
                result=ContentResult(
                    content_hash(t), t, "text/html", title=f"Title {n}", url=f"http://x.test/{n}"
                ),
            )
            for n, (i, t) in enumerate(zip(ids, texts, strict=True))
        ]
    )
    return ids


def test_search_answers_ranked_hits_with_snippets_and_pages_with_a_cursor(api: Api) -> None:
    store_text(
        api, [f"the quick brown fox number {n} jumps over the lazy dog" for n in range(5)] + ["nothing here"]
    )
    get = lambda **p: httpx.get(f"{api.url}/v1/search", params=p, headers=api.auth("read"))  # noqa: E731
    first = get(q="fox lazy", limit=3)
    assert first.status_code == 200
    body = first.json()
    assert len(body["hits"]) == 3 and body["next_cursor"]
    assert "**fox**" in body["hits"][0]["snippet"] and body["hits"][0]["url"].startswith("http://x.test/")
    assert body["hits"][0]["rank"] <= body["hits"][1]["rank"]
    rest = get(q="fox lazy", limit=3, cursor=body["next_cursor"]).json()
    assert len(rest["hits"]) == 2 and rest["next_cursor"] is None
    assert get(q="zebra").json() == {"hits": [], "next_cursor": None}

    for params, field in (({"q": ""}, "q"), ({"q": "   "}, "q"), ({"q": "x" * 501}, "q"), ({}, "q")):
        r = get(**params)
        assert r.status_code == 422 and r.json()["error"].startswith(f"query.{field}"), r.text
    bad_cursor = get(q="fox", cursor="not-a-cursor")
    assert bad_cursor.status_code == 422 and bad_cursor.json()["error"].startswith("query.cursor:")
    assert (
        httpx.get(f"{api.url}/v1/search", params={"q": "fox"}, headers=api.auth("ingest")).status_code == 403
    )


def test_feeds_are_subscribed_listed_with_their_status_and_deleted(api: Api) -> None:
    h = api.auth("ingest")
    created = httpx.post(
        f"{api.url}/v1/feeds",
        json={"url": "https://news.example/rss", "poll_interval_seconds": 600},
        headers=h,
    )
    assert created.status_code == 201, created.text
    feed = created.json()
    assert feed["last_status"] == "new" and feed["poll_interval_seconds"] == 600
    default = httpx.post(
        f"{api.url}/v1/feeds", json={"url": "https://blog.example/atom"}, headers=api.auth("admin")
    ).json()
    assert default["poll_interval_seconds"] == api.settings.feed_poll_interval_seconds
    api.store.feed_failed(feed["id"], "HTTP 500", next_poll_at=0)
    listed = httpx.get(f"{api.url}/v1/feeds", headers=api.auth("read")).json()
    by_id = {f["id"]: f for f in listed["feeds"]}
    assert by_id[feed["id"]]["last_status"] == "error" and by_id[feed["id"]]["last_error"] == "HTTP 500"
    assert by_id[feed["id"]]["failures"] == 1

    bad = httpx.post(f"{api.url}/v1/feeds", json={"url": "ftp://x"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"].startswith("url")
    assert (
        httpx.post(
            f"{api.url}/v1/feeds", json={"url": "https://a.example/"}, headers=api.auth("read")
        ).status_code
        == 403
    )
    assert httpx.delete(f"{api.url}/v1/feeds/{feed['id']}", headers=h).status_code == 204
    assert httpx.delete(f"{api.url}/v1/feeds/{feed['id']}", headers=h).status_code == 404


def test_url_and_feed_items_are_accepted_and_a_feed_item_subscribes(api: Api) -> None:
    h = api.auth("ingest")
    page = httpx.post(f"{api.url}/v1/items", json={"url": "https://example.org/a?utm_source=x"}, headers=h)
    assert page.status_code == 202
    feed = httpx.post(
        f"{api.url}/v1/items",
        json={"feed": "https://example.org/feed.xml", "poll_interval_seconds": 300},
        headers=h,
    )
    assert feed.status_code == 202
    kinds = {api.store.get_item(r.json()["id"]).kind for r in (page, feed)}  # type: ignore[union-attr]
    assert kinds == {"url", "feed"}
    (sub,) = httpx.get(f"{api.url}/v1/feeds", headers=api.auth("read")).json()["feeds"]
    assert sub["url"] == "https://example.org/feed.xml" and sub["poll_interval_seconds"] == 300
    bad = httpx.post(f"{api.url}/v1/items", json={"url": "javascript:alert(1)"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"].startswith("url:")
    batch = httpx.post(
        f"{api.url}/v1/items/batch",
        json={"items": [{"url": "http://a.example/"}, {"feed": "nope"}]},
        headers=h,
    ).json()["results"]
    assert "id" in batch[0] and batch[1]["error"].startswith("items[1].feed:")
