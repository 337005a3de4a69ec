"""Search and feed subscriptions: GET /v1/search, POST/GET /v1/feeds, DELETE /v1/feeds/{id},
POST /v1/feeds/{id}/poll.

Every route here queries the store, so each is a plain `def`, run in FastAPI's thread pool: a slow
query must not hold up the event loop ingest is answered on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from atlas.api.guards import ApiError
from atlas.api.routes_items import ERRORS
from atlas.api.schemas import FEED_ID_PATTERN, FeedIn, FeedPage, FeedView, SearchHitView, SearchPage
from atlas.api.services import Services
from atlas.engine.items import parse_url
from atlas.errors import ItemError
from atlas.store.models import CURSOR_PATTERN

MAX_QUERY_CHARS = 500


def feed_view(row: dict[str, Any], default_interval: float) -> FeedView:
    return FeedView(
        id=row["id"],
        url=row["url"],
        title=row["title"],
        poll_interval_seconds=row["interval_seconds"] or default_interval,
        next_poll_at=row["next_poll_at"],
        last_polled_at=row["last_polled_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        failures=row["failures"],
        entries_seen=row["entries_seen"],
        created_at=row["created_at"],
    )


def build(svc: Services) -> APIRouter:
    router = APIRouter(responses=ERRORS)
    read = Depends(svc.auth.require("read"))
    ingest = Depends(svc.auth.require("ingest"))  # admin keys pass too
    default_interval = svc.settings.feed_poll_interval_seconds

    @router.get("/v1/search", response_model=SearchPage, tags=["search"])
    def search(
        q: str = Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S", description="Words to find."),
        limit: int = Query(default=20, ge=1, le=100),
        cursor: str | None = Query(default=None, max_length=64, pattern=CURSOR_PATTERN),
        _: Any = read,
    ) -> SearchPage:
        """Stored content matching every word, best match first, with a snippet per hit."""
        try:
            hits, next_cursor = svc.store.search(q, limit=limit, cursor=cursor)
        except ItemError as exc:
            raise ApiError(422, str(exc)) from None
        return SearchPage(hits=[SearchHitView(**vars(h)) for h in hits], next_cursor=next_cursor)

    @router.post("/v1/feeds", status_code=201, response_model=FeedView, tags=["feeds"])
    def subscribe(body: FeedIn, _: Any = ingest) -> Any:
        """Subscribe to an RSS/Atom feed; polling starts at once. A repeat updates the interval and,
        for a feed in error backoff, resets the backoff so it is polled again now."""
        svc.check_writable()
        try:
            url = parse_url(body.url, "url")
        except ItemError as exc:
            raise ApiError(422, str(exc)) from None
        row = svc.store.feed_add(url, body.poll_interval_seconds)
        return JSONResponse(feed_view(row, default_interval).model_dump(), status_code=201)

    @router.get("/v1/feeds", response_model=FeedPage, tags=["feeds"])
    def list_feeds(
        cursor: str | None = Query(
            default=None, pattern=FEED_ID_PATTERN, description="next_cursor of the previous page."
        ),
        limit: int = Query(default=100, ge=1, le=1000),
        _: Any = read,
    ) -> FeedPage:
        """Subscriptions with their last poll's status and error; next_cursor pages on."""
        rows = svc.store.feed_list(after=cursor, limit=limit)
        return FeedPage(
            feeds=[feed_view(r, default_interval) for r in rows],
            next_cursor=rows[-1]["id"] if len(rows) == limit else None,
        )

    @router.post(
        "/v1/feeds/{feed_id}/poll",
        status_code=202,
        response_model=FeedView,
        tags=["feeds"],
        responses={202: {"description": "Due now: the poller (atlas services / atlas up) reads it next."}},
    )
    def poll_now(feed_id: str, _: Any = ingest) -> Any:
        """Poll a feed at once: it becomes due now and its error backoff is reset. The poll itself
        is run by the feed poller within its next tick; GET /v1/feeds shows the outcome."""
        svc.check_writable()
        row = svc.store.feed_poll_now(feed_id)
        if row is None:
            raise ApiError(404, f"no feed {feed_id!r}")
        return JSONResponse(feed_view(row, default_interval).model_dump(), status_code=202)

    @router.delete("/v1/feeds/{feed_id}", status_code=204, tags=["feeds"])
    def unsubscribe(feed_id: str, _: Any = ingest) -> None:
        """Stop polling a feed; the items it produced stay."""
        if not svc.store.feed_delete(feed_id):
            raise ApiError(404, f"no feed {feed_id!r}")

    return router
