"""Feeds as they are really served, and polling one now: Python's own http.server serving files,
the real fetcher and poller, the API on uvicorn and atlas-ops on a real store."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from atlas.cli.ops import ops
from atlas.pipeline import build_fetcher
from atlas.pipeline.feeds import FeedPoller
from atlas.settings import Settings
from atlas.store.sqlite import SQLiteStore
from tests.helpers.api import running_api


def rss(base: str, n: int) -> str:
    items = "".join(
        f"<item><title>Story {i}</title><link>{base}/article/{i}</link><guid>{base}/article/{i}</guid></item>"
        for i in range(n)
    )
    head = '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Files</title>'
    return f"{head}{items}</channel></rss>"


class Files(SimpleHTTPRequestHandler):
    # Python's mapping for .rss comes from /etc/mime.types where there is one (Debian's says
    # application/x-rss+xml); stated here so the test serves the same on every machine.
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".rss": "application/x-rss+xml"}

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Files, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def fetching(settings: Settings) -> Settings:
    return settings.replace(
        fetch_allow_hosts=("127.0.0.1",),
        fetch_total_timeout_seconds=5.0,
        host_rate_per_second=1000,
        host_rate_burst=1000,
    )


def poll_due(settings: Settings, store: SQLiteStore) -> int:
    async def once() -> int:
        poller = FeedPoller(store, build_fetcher(settings))
        try:
            return await poller.poll_due()
        finally:
            await poller.fetcher.aclose()

    return asyncio.run(once())


def test_feeds_served_with_the_types_servers_really_use_are_read(
    fetching: Settings, store: SQLiteStore, files: tuple[str, Path]
) -> None:
    base, root = files
    (root / "feed.rss").write_text(rss(base, 2))  # application/x-rss+xml
    (root / "feed.txt").write_text(rss(base + "/txt", 1))  # text/plain: sniffed, an RSS body
    (root / "feed.json").write_text(  # application/json: sniffed, a JSON Feed
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "title": "JSON",
                "items": [{"id": "j1", "url": f"{base}/json/1", "title": "One"}],
            }
        )
    )
    (root / "page.html").write_text("<!DOCTYPE html><html><body><a href='/x'>not a feed</a></body></html>")
    served = httpx.get(f"{base}/feed.rss").headers["content-type"]
    assert served == "application/x-rss+xml"
    feeds = {
        name: store.feed_add(f"{base}/{name}", 60.0)["id"]
        for name in ("feed.rss", "feed.txt", "feed.json", "page.html")
    }

    assert poll_due(fetching, store) == 4
    state = {f["id"]: f for f in store.feed_list()}
    for name in ("feed.rss", "feed.txt", "feed.json"):
        assert state[feeds[name]]["last_status"] == "ok", (name, state[feeds[name]]["last_error"])
    page = state[feeds["page.html"]]
    assert page["last_status"] == "error"
    assert "served as text/html and the body is not RSS, Atom, RDF or JSON Feed" in page["last_error"]
    urls = sorted(i.payload["url"] for i in store.list_items(kind="url"))
    assert urls == sorted(
        [f"{base}/article/0", f"{base}/article/1", f"{base}/txt/article/0", f"{base}/json/1"]
    )


def test_a_feed_in_error_backoff_is_polled_now_over_http_the_cli_and_by_subscribing_again(
    fetching: Settings, files: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = files
    url = f"{base}/late.rss"  # not there yet: 404
    with running_api(fetching) as api:
        h = api.auth("ingest")
        feed = httpx.post(f"{api.url}/v1/feeds", json={"url": url, "poll_interval_seconds": 600}, headers=h)
        assert feed.status_code == 201
        feed_id = feed.json()["id"]
        assert poll_due(fetching, api.store) == 1
        failing = api.store.feed_get(feed_id)
        assert failing is not None and failing["last_status"] == "error" and failing["failures"] == 1
        assert failing["next_poll_at"] > time.time() + 200  # backing off: at least half the interval
        assert poll_due(fetching, api.store) == 0

        (root / "late.rss").write_text(rss(base, 1))
        now = httpx.post(f"{api.url}/v1/feeds/{feed_id}/poll", headers=h)
        assert now.status_code == 202, now.text
        assert now.json()["failures"] == 0 and now.json()["next_poll_at"] <= time.time()
        assert now.json()["last_status"] == "error"  # it still describes the last poll
        assert poll_due(fetching, api.store) == 1  # the poller picks it at once
        listed = httpx.get(f"{api.url}/v1/feeds", headers=api.auth("read")).json()["feeds"]
        assert [(f["id"], f["last_status"], f["entries_seen"]) for f in listed] == [(feed_id, "ok", 1)]
        missing = httpx.post(f"{api.url}/v1/feeds/f_{'0' * 32}/poll", headers=h)
        assert missing.status_code == 404 and missing.json() == {"error": f"no feed 'f_{'0' * 32}'"}
        assert httpx.post(f"{api.url}/v1/feeds/{feed_id}/poll", headers=api.auth("read")).status_code == 403

        # Subscribing again to a feed in error backoff resets it too.
        (root / "late.rss").unlink()
        api.store.feed_failed(feed_id, "HTTP 404", next_poll_at=time.time() + 3600)
        again = httpx.post(f"{api.url}/v1/feeds", json={"url": url}, headers=h)
        assert again.status_code == 201 and again.json()["id"] == feed_id
        assert again.json()["failures"] == 0 and again.json()["next_poll_at"] <= time.time()
        assert again.json()["poll_interval_seconds"] == 600  # the interval is kept

        # And from atlas-ops.
        api.store.feed_failed(feed_id, "HTTP 404", next_poll_at=time.time() + 3600)
        monkeypatch.setenv("ATLAS_DATA_DIR", str(fetching.data_dir))
        monkeypatch.setenv("ATLAS_DB_SYNCHRONOUS", "NORMAL")
        result = CliRunner().invoke(ops, ["feeds", "poll", feed_id, "--format", "json"])
        assert result.exit_code == 0, result.output
        shown = json.loads(result.output)
        assert shown["id"] == feed_id and shown["failures"] == 0 and shown["next_poll_at"] <= time.time()
        unknown = CliRunner().invoke(ops, ["feeds", "poll", "f_nope"])
        assert unknown.exit_code == 1 and "no feed 'f_nope'" in unknown.output
