"""Store queries run off the event loop, and reading an item serializes cleanly (real uvicorn)."""

from __future__ import annotations

import threading
from typing import Any, cast

import httpx
import pytest

from atlas.engine import queue
from atlas.pipeline.document import content_hash
from atlas.settings import Settings
from atlas.store.models import ContentResult, DLQFilter, ErrorInfo, Item, NewItem, Transition
from tests.helpers.api import running_api

pytestmark = pytest.mark.both_backends

HOLD_SECONDS = 10.0  # the listing's longest hold; the test releases it as soon as ingest answered


class SlowDLQStore:
    """The real store (either backend) through its protocol, with its DLQ listing held until the
    test lets it go; every other call goes straight to the store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.listing, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def dlq_list(self, flt: DLQFilter, limit: int = 100, after: str | None = None) -> list[Item]:
        self.listing.set()
        self.release.wait(HOLD_SECONDS)
        return cast(list[Item], self.store.dlq_list(flt, limit, after))


def test_a_slow_dlq_listing_does_not_hold_up_ingest(settings: Settings) -> None:
    with running_api(settings, wrap=SlowDLQStore) as api:
        store = cast(SlowDLQStore, api.store)
        listed: dict[str, httpx.Response] = {}

        def list_dlq() -> None:
            listed["dlq"] = httpx.get(f"{api.url}/v1/dlq", headers=api.auth("admin"), timeout=60)

        lister = threading.Thread(target=list_dlq)
        lister.start()
        assert store.listing.wait(30), "the DLQ listing never started"
        answers = [
            httpx.post(
                f"{api.url}/v1/items",
                json={"content": f"while listing {n}"},
                headers=api.auth("ingest"),
                timeout=60,
            )
            for n in range(5)
        ]
        # Ordering, not speed: the ingest answers came while the listing was still held.
        listing_still_held = lister.is_alive() and not store.release.is_set()
        store.release.set()
        lister.join(60)
        assert [a.status_code for a in answers] == [202] * 5
        assert listing_still_held, "ingest was answered only after the DLQ listing finished"
        assert listed["dlq"].status_code == 200 and listed["dlq"].json()["items"] == []


def test_an_item_with_history_and_result_reads_without_serialization_warnings(settings: Settings) -> None:
    # pytest turns warnings into errors (also in the server's thread): a model fed dicts where it
    # declares models warns on serialization, and the request would answer 500.
    with running_api(settings) as api:
        (item,) = api.store.enqueue([NewItem("document", {"content": "read me"})])
        (claimed,) = api.store.claim("test", 1, 30)
        error = ErrorInfo(stage="extract", error_class="Flaky", message="try again", host=None)
        policy = queue.RetryPolicy(max_attempts=3)
        api.store.apply(
            [queue.failed(claimed, error, permanent=False, policy=policy, now=0, rand=lambda: 0.0)]
        )
        (claimed,) = api.store.claim("test", 1, 30)
        result = ContentResult(content_hash("read me"), "read me", "text/plain", title="Read me")
        api.store.apply([Transition(item.id, claimed.token, "done", "done", result=result)])

        r = httpx.get(f"{api.url}/v1/items/{item.id}", headers=api.auth("read"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "done"
        assert [(a["outcome"], a["error_class"]) for a in body["history"]] == [("retry", "Flaky")]
        assert body["result"]["title"] == "Read me" and body["result"]["bytes"] == len("read me")
