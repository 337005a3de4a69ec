"""Feeds: parsing RSS/Atom with feedparser, and polling subscriptions into `url` items.

A subscription is a row in the store's `feeds` table (POST /v1/feeds, or a `feed` item, which
subscribes when accepted). The poller, run by `atlas services` and `atlas up`, fetches each due
feed through the same guarded fetcher as pages, with If-None-Match / If-Modified-Since from the
last answer; the store enqueues a `url` item only for entries it has not seen (by entry id, else
link) in the same transaction that records them. A failing feed is polled again after a capped,
jittered exponential backoff; POST /v1/feeds/{id}/poll (or subscribing again) resets it.

Feeds are taken when served with any type feeds really come with (fetch.FEED_TYPES); served with a
type that says nothing (text/plain, application/octet-stream, text/html, none), the body is
sniffed first. JSON Feed (jsonfeed.org) is read here; feedparser reads RSS, Atom and RDF.
feedparser (with sgmllib3k) is imported by the first feed read, not with this module: the default
pipeline holds the feed stage, and an engine that only sees documents should not load it.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atlas.errors import AtlasError, Deferred, PermanentStageError, StageError
from atlas.logging import get_logger
from atlas.pipeline.base import ItemContext
from atlas.pipeline.fetch import FEED_GENERIC_TYPES, FEED_TYPES, Fetched, Fetcher
from atlas.reliability.backoff import full_jitter
from atlas.store.models import NewItem

log = get_logger("atlas.feeds")
MAX_ENTRIES_PER_POLL = 500
SNIFF_BYTES = 4096
# What may come before an XML document's root element: declaration, processing instructions,
# comments, doctype. The root of a feed is rss, feed (Atom) or RDF (RSS 1.0), perhaps prefixed.
_XML_PROLOG = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)", re.DOTALL | re.IGNORECASE)
_FEED_ROOT = re.compile(rb"\s*<([A-Za-z_][\w.-]*:)?(rss|feed|RDF)[\s/>]")
_JSON_FEED_VERSION = "https://jsonfeed.org/version/"


@dataclass(frozen=True)
class Entry:
    key: str  # entry id, else link
    link: str
    title: str | None


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[Entry]


def sniff_feed(body: bytes) -> bool:
    """True when `body` starts like RSS, Atom, RDF or JSON Feed (for a body served as a generic type)."""
    head = body[:SNIFF_BYTES].removeprefix(b"\xef\xbb\xbf")
    if head.lstrip().startswith(b"{"):
        return _json_feed(body) is not None
    pos = 0
    while match := _XML_PROLOG.match(head, pos):
        pos = match.end()
    return _FEED_ROOT.match(head, pos) is not None


def _json_feed(body: bytes) -> dict[str, Any] | None:
    """The JSON Feed document in `body`, or None when it is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and str(doc.get("version", "")).startswith(_JSON_FEED_VERSION):
        return doc
    return None


def read_feed(got: Fetched) -> ParsedFeed:
    """The feed a fetch brought; PermanentStageError when it is not one (a generic type is sniffed)."""
    if got.content_type not in FEED_TYPES and not sniff_feed(got.body):
        served = got.content_type or "no Content-Type"
        raise PermanentStageError(
            f"{got.url}: served as {served} and the body is not RSS, Atom, RDF or JSON Feed "
            f"(feeds are taken as {', '.join(FEED_TYPES)}; "
            f"{', '.join(t for t in FEED_GENERIC_TYPES if t)} are sniffed)",
            stage="feed",
        )
    return parse_feed(got.body, got.url)


def parse_feed(body: bytes, url: str) -> ParsedFeed:
    """Entries with an http(s) link; PermanentStageError for a document that is not a feed."""
    if body.lstrip().startswith(b"{"):
        doc = _json_feed(body)
        if doc is None:
            raise PermanentStageError(
                f"{url}: not a valid feed (JSON without a JSON Feed version)", stage="feed"
            )
        return _parse_json_feed(doc)
    import feedparser

    parsed: Any = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    if not parsed.entries and (parsed.get("bozo") or not parsed.get("version")):
        reason = parsed.get("bozo_exception") or "no RSS or Atom structure found"
        raise PermanentStageError(f"{url}: not a valid feed ({reason})", stage="feed")
    entries: list[Entry] = []
    for e in parsed.entries[:MAX_ENTRIES_PER_POLL]:
        link = e.get("link") or ""
        if not link.startswith(("http://", "https://")):
            continue
        entries.append(Entry(key=str(e.get("id") or link), link=link, title=e.get("title")))
    return ParsedFeed(title=parsed.feed.get("title"), entries=entries)


def _parse_json_feed(doc: dict[str, Any]) -> ParsedFeed:
    """JSON Feed 1.x: items with an id and a url (external_url when url is absent)."""
    entries: list[Entry] = []
    items = doc.get("items")
    for item in (items if isinstance(items, list) else [])[:MAX_ENTRIES_PER_POLL]:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url") or ""
        if not isinstance(link, str) or not link.startswith(("http://", "https://")):
            continue
        title = item.get("title")
        entries.append(
            Entry(key=str(item.get("id") or link), link=link, title=title if isinstance(title, str) else None)
        )
    title = doc.get("title")
    return ParsedFeed(title=title if isinstance(title, str) else None, entries=entries)


class FeedRead:
    """Stage for `feed` items: the feed must parse; its title and entry titles become its text."""

    name: str = "feed"
    kinds: tuple[str, ...] = ("feed",)

    async def run(self, ctx: ItemContext) -> None:
        if ctx.result is not None:
            return  # not modified since the fetch that stored it
        got: Fetched = ctx.extra["fetched"]
        feed = read_feed(got)
        ctx.title = feed.title
        ctx.text = "\n".join([feed.title or got.url, *(e.title or e.link for e in feed.entries)])


class FeedPoller:
    """Poll due feeds until stopped. `store` is the SQLite store (feeds live beside the items)."""

    def __init__(
        self,
        store: Any,
        fetcher: Fetcher,
        *,
        backoff_cap_seconds: float = 86_400.0,
        default_interval: float = 900.0,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        metrics: Any = None,
    ) -> None:
        self.store, self.fetcher, self.clock, self.rand = store, fetcher, clock, rand
        self.backoff_cap_seconds, self.default_interval = backoff_cap_seconds, default_interval
        self.metrics = metrics

    async def poll_due(self, limit: int = 32) -> int:
        """Poll every feed due now (up to `limit`, concurrently); returns how many were polled."""
        due = self.store.feeds_due(self.clock(), limit, self.default_interval)
        await asyncio.gather(*(self.poll(feed) for feed in due))
        return len(due)

    async def poll(self, feed: dict[str, Any]) -> str:
        """Poll one feed and record the outcome; returns it (new, not_modified, unchanged, error)."""
        now = self.clock()
        try:
            got = await self.fetcher.fetch(
                feed["url"],
                accept=FEED_TYPES,
                generic=FEED_GENERIC_TYPES,
                etag=feed["etag"],
                last_modified=feed["last_modified"],
            )
            if got.not_modified:
                self.store.feed_polled(
                    feed["id"], [], status="not_modified", next_poll_at=now + feed["interval"]
                )
                return self._count("not_modified")
            parsed = read_feed(got)
        except Deferred as exc:
            self.store.feed_failed(feed["id"], str(exc), next_poll_at=exc.until, count=False)
            return self._count("deferred")
        except (StageError, AtlasError) as exc:
            delay = full_jitter(feed["failures"] + 1, feed["interval"], self.backoff_cap_seconds, self.rand)
            delay = max(delay, feed["interval"] / 2)  # never poll a failing feed more often than a good one
            self.store.feed_failed(feed["id"], str(exc)[:1000], next_poll_at=now + delay, count=True)
            log.warning("feed poll failed", feed_id=feed["id"], url=feed["url"], error=str(exc)[:300])
            return self._count("error")
        items = [
            NewItem(
                kind="url",
                payload={"url": e.link},
                source=f"feed:{feed['id']}",
                metadata={"feed_entry": e.key},
            )
            for e in parsed.entries
        ]
        added = self.store.feed_polled(
            feed["id"],
            [(e.key, item) for e, item in zip(parsed.entries, items, strict=True)],
            status="ok",
            next_poll_at=now + feed["interval"],
            etag=got.etag,
            last_modified=got.last_modified,
            title=parsed.title,
        )
        return self._count("new" if added else "unchanged")

    def _count(self, outcome: str) -> str:
        if self.metrics is not None:
            self.metrics.labels(outcome).inc()
        return outcome


def run_poller(
    poller: FeedPoller,
    stop: threading.Event,
    tick_seconds: float = 1.0,
    beat: Callable[[], None] | None = None,
) -> None:
    """Poll in this thread until `stop` is set (for `atlas services` and `atlas up`); `beat` is
    called on every turn (the systemd watchdog's liveness signal)."""

    async def loop() -> None:
        while not stop.is_set():
            if beat is not None:
                beat()
            try:
                await poller.poll_due()
            except Exception as exc:  # a store hiccup must not end polling
                log.error("feed polling failed", error=str(exc)[:300])
            await asyncio.sleep(tick_seconds)
        await poller.fetcher.aclose()

    asyncio.run(loop())
