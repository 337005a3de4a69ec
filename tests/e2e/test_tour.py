"""The README's tour, for real: `atlas up`, a URL and a feed ingested over HTTP, then searched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from atlas.api.keys import create_key
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.api import free_port
from tests.helpers.engine import wait_for
from tests.helpers.origin import running_origin


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_url_and_a_feed_are_ingested_and_searchable_through_atlas_up(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    key = str(create_key(store, "", "tour", ["ingest", "read"])["key"])
    auth = {"Authorization": f"Bearer {key}"}
    port = free_port()
    env = atlas_env(
        tmp_path,
        ATLAS_API_PORT=str(port),
        ATLAS_FETCH_ALLOW_HOSTS="127.0.0.1",  # the test origin; everything else internal stays refused
        ATLAS_WORKERS="1",
    )
    api = f"http://127.0.0.1:{port}"
    with running_origin() as origin, (tmp_path / "up.log").open("ab") as log:
        up = subprocess.Popen([sys.executable, "-m", "atlas", "up"], env=env, stdout=log, stderr=log)
        try:
            wait_for(lambda: ready(api), 60, "atlas up to be ready")
            page = f"http://127.0.0.1:{origin.port}/article/42?topic=lighthouse"
            r = httpx.post(f"{api}/v1/items", json={"url": page}, headers=auth)
            assert r.status_code == 202
            feed = httpx.post(
                f"{api}/v1/feeds", json={"url": f"http://127.0.0.1:{origin.port}/feed.atom"}, headers=auth
            )
            assert feed.status_code == 201

            def search(q: str) -> list[dict[str, object]]:
                hits: list[dict[str, object]] = httpx.get(
                    f"{api}/v1/search", params={"q": q}, headers=auth
                ).json()["hits"]
                return hits

            wait_for(lambda: len(search("lighthouse")) == 1, 60, "the page to be searchable")
            wait_for(
                lambda: len(search("story library")) == 3, 60, "the feed's three entries to be searchable"
            )
            (hit,) = search("lighthouse")
            assert hit["url"] == page and "**lighthouse**" in str(hit["snippet"])
            (sub,) = httpx.get(f"{api}/v1/feeds", headers=auth).json()["feeds"]
            assert sub["last_status"] == "ok" and sub["entries_seen"] == 3
            item = httpx.get(f"{api}/v1/items/{r.json()['id']}", headers=auth).json()
            assert item["state"] == "done" and item["result"]["title"] == "Story 42 about the lighthouse"
        finally:
            up.terminate()
            assert up.wait(timeout=60) == 0
    store.close()
