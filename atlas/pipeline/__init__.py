"""Pipeline stages. `default_pipeline` is what `atlas core` runs unless told otherwise."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from atlas.engine.hosts import HostGate, HostPolicy
from atlas.pipeline.base import ItemContext, Pipeline, Stage
from atlas.pipeline.dedupe import Dedupe
from atlas.pipeline.document import DocumentDecode, Normalise
from atlas.pipeline.extract import Extract
from atlas.pipeline.feeds import FeedRead
from atlas.pipeline.fetch import Fetch, Fetcher, FetchPolicy
from atlas.pipeline.ssrf import AllowList, Resolver, system_resolver
from atlas.settings import Settings


def build_fetcher(
    settings: Settings, *, resolver: Resolver | None = None, registry: CollectorRegistry | None = None
) -> Fetcher:
    """The guarded fetcher with its per-host gate, as configured."""
    gate = HostGate(HostPolicy.from_settings(settings), registry=registry)
    return Fetcher(
        FetchPolicy.from_settings(settings),
        AllowList.parse(settings.fetch_allow_hosts),
        resolver=resolver or system_resolver,
        gate=gate,
    )


def web_stages(settings: Settings, *, resolver: Resolver | None = None) -> tuple[Stage, ...]:
    """fetch -> extract (pages) | feed (feeds) -> dedupe; Normalise then hashes and builds the result."""
    return (Fetch(build_fetcher(settings, resolver=resolver)), Extract(), FeedRead(), Dedupe())


def default_pipeline(settings: Settings | None = None) -> Pipeline:
    return Pipeline(stages=(DocumentDecode(), *web_stages(settings or Settings()), Normalise()))


__all__ = ["ItemContext", "Pipeline", "Stage", "build_fetcher", "default_pipeline", "web_stages"]
