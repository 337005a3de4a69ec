"""A document-only engine does not load the web stages' libraries in its workers (issue 18).

The worker is the real one (forkserver child of a real Engine) running the default pipeline; it
reports its own sys.modules through the stored result (tests.helpers.pipelines).
"""

from __future__ import annotations

from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import engine_thread, finished, wait_for


def test_a_worker_that_only_ran_documents_has_not_imported_httpx_lxml_trafilatura_or_feedparser(
    settings: Settings, store: SQLiteStore
) -> None:
    fast = settings.replace(workers=1, worker_concurrency=2, poll_interval_ms=10)
    (result,) = store.enqueue(
        [NewItem(kind="document", payload={"content": "<p>one page</p>", "content_type": "text/html"})]
    )
    with engine_thread(fast, store, "tests.helpers.pipelines:documents_reporting_modules"):
        wait_for(lambda: finished(store) == 1, 60, "the document to finish")
    item = store.get_item(result.id)
    assert item is not None and item.state == "done", item
    content = store.get_content(result.id)
    assert content is not None
    assert content["title"] == "loaded:", f"the worker loaded web libraries: {content['title']}"
