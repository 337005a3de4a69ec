"""Pipeline stages. `default_pipeline` is what `atlas core` runs unless told otherwise.

The web stages (httpx, trafilatura, lxml, feedparser) are imported when a pipeline or fetcher is
built, not with this package: the API and the exporter import atlas.pipeline.document for its
constants and should not carry an HTML extractor in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atlas.pipeline.base import ItemContext, Pipeline, Stage
from atlas.pipeline.document import DocumentDecode, Normalise
from atlas.settings import Settings

if TYPE_CHECKING:
    from atlas.pipeline.fetch import Fetcher
    from atlas.pipeline.ssrf import Resolver


def build_fetcher(settings: Settings, *, resolver: Resolver | None = None) -> Fetcher:
    """The guarded fetcher with its per-host gate, as configured."""
    from atlas.pipeline.fetch import Fetcher, FetchPolicy
    from atlas.pipeline.hosts import HostGate, HostPolicy
    from atlas.pipeline.ssrf import AllowList, system_resolver

    gate = HostGate(HostPolicy.from_settings(settings))
    return Fetcher(
        FetchPolicy.from_settings(settings),
        AllowList.parse(settings.fetch_allow_hosts),
        resolver=resolver or system_resolver,
        gate=gate,
    )


def web_stages(fetcher: Fetcher) -> tuple[Stage, ...]:
    """fetch -> extract (pages) | feed (feeds) -> dedupe; Normalise then hashes and builds the result."""
    from atlas.pipeline.dedupe import Dedupe
    from atlas.pipeline.extract import Extract
    from atlas.pipeline.feeds import FeedRead
    from atlas.pipeline.fetch import Fetch

    return (Fetch(fetcher), Extract(), FeedRead(), Dedupe())


def web_pipeline(settings: Settings, *, resolver: Resolver | None = None) -> Pipeline:
    """Documents and web items, reporting the fetcher's per-host state to the supervisor."""
    fetcher = build_fetcher(settings, resolver=resolver)
    probe = fetcher.gate.snapshot if fetcher.gate is not None else None
    return Pipeline(stages=(DocumentDecode(), *web_stages(fetcher), Normalise()), probe=probe)


def default_pipeline(settings: Settings | None = None) -> Pipeline:
    return web_pipeline(settings or Settings())


__all__ = [
    "ItemContext",
    "Pipeline",
    "Stage",
    "build_fetcher",
    "default_pipeline",
    "web_pipeline",
    "web_stages",
]
