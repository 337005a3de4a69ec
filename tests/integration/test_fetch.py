"""The fetch stage against a real origin on 127.0.0.1: bad input ends as a recorded error, and the
SSRF guard keeps requests away from listeners that are not allow-listed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from atlas.errors import PermanentStageError, StageError
from atlas.pipeline import build_fetcher
from atlas.pipeline.extract import decode, extract_page
from atlas.pipeline.fetch import FEED_TYPES, PAGE_TYPES, Fetched
from atlas.pipeline.ssrf import BlockedAddress
from atlas.settings import Settings
from tests.helpers.origin import Origin, origin_resolver, running_origin

LIMITS = Settings(
    fetch_allow_hosts=("127.0.0.1",),
    fetch_total_timeout_seconds=2.0,
    fetch_read_timeout_seconds=1.0,
    fetch_max_body_bytes=1 << 20,
    host_rate_per_second=1000,
    host_rate_burst=1000,
)


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with running_origin() as o:
        yield o


def fetch(settings: Settings, url: str, accept: tuple[str, ...] = PAGE_TYPES) -> Fetched:
    async def go() -> Fetched:
        fetcher = build_fetcher(settings, resolver=origin_resolver)
        try:
            return await fetcher.fetch(url, accept=accept)
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/status?code=500", StageError, "HTTP 500"),
        ("/status?code=429", StageError, "HTTP 429"),
        ("/status?code=404", PermanentStageError, "HTTP 404"),
        ("/loop/a", PermanentStageError, "redirect loop"),
        ("/redirect/9", PermanentStageError, "more than 5 redirects"),
        ("/trickle", StageError, "longer than 2s"),  # slow loris: bytes keep coming, too slowly
        ("/slow?s=1.5", StageError, "timed out"),  # nothing for longer than the read timeout
        ("/huge", PermanentStageError, "larger than 1048576 bytes"),
        ("/bomb", PermanentStageError, "larger than 1048576 bytes"),  # 64 MiB of zeros in 64 KiB
        ("/pdf", PermanentStageError, "content type application/pdf"),
    ],
)
def test_misbehaving_origins_end_in_a_clear_error(
    origin: Origin, path: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        fetch(LIMITS, origin.url("h1.test", path))
    assert not isinstance(info.value, PermanentStageError) or error is PermanentStageError


@pytest.mark.parametrize("path", ["/gzipped", "/redirect/3", "/broken", "/latin1", "/nocharset"])
def test_awkward_but_valid_pages_extract_cleanly(origin: Origin, path: str) -> None:
    got = fetch(LIMITS, origin.url("h2.test", path))
    page = extract_page(decode(got.body, got.charset, got.url), got.url)
    assert "Paragraph 1 of story" in page.text
    if path == "/latin1":
        assert "comité café" in page.text
    if path == "/nocharset":
        assert "Straßenbahnen" in page.text


def test_binary_and_empty_pages_are_permanent_failures(origin: Origin) -> None:
    got = fetch(LIMITS, origin.url("h3.test", "/binary"))
    with pytest.raises(PermanentStageError, match="binary"):
        decode(got.body, got.charset, got.url)
    got = fetch(LIMITS, origin.url("h3.test", "/empty"))
    with pytest.raises(PermanentStageError, match="no extractable main text"):
        extract_page(decode(got.body, got.charset, got.url), got.url)


def test_feeds_are_fetched_conditionally(origin: Origin) -> None:
    got = fetch(LIMITS, origin.url("h4.test", "/feed.rss"), FEED_TYPES)
    assert got.status == 200 and got.etag

    async def again() -> Fetched:
        fetcher = build_fetcher(LIMITS, resolver=origin_resolver)
        try:
            return await fetcher.fetch(origin.url("h4.test", "/feed.rss"), accept=FEED_TYPES, etag=got.etag)
        finally:
            await fetcher.aclose()

    assert asyncio.run(again()).not_modified


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::ffff:127.0.0.1]", "localhost"],
)
def test_a_loopback_listener_that_is_not_allow_listed_receives_no_request(origin: Origin, host: str) -> None:
    strict = LIMITS.replace(fetch_allow_hosts=())

    async def system_and_test_names(name: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # what "localhost" (or a rebinding name) resolves to

    async def go() -> None:
        from atlas.pipeline.fetch import Fetcher, FetchPolicy
        from atlas.pipeline.ssrf import AllowList

        fetcher = Fetcher(FetchPolicy.from_settings(strict), AllowList(), resolver=system_and_test_names)
        await fetcher.fetch(f"http://{host}:{origin.port}/article/1")

    before = sum(origin.hits.values())
    with pytest.raises(BlockedAddress, match="SSRF guard"):
        asyncio.run(go())
    assert sum(origin.hits.values()) == before


def test_a_redirect_to_an_internal_address_is_refused_after_the_hop(origin: Origin) -> None:
    only_by_name = LIMITS.replace(fetch_allow_hosts=("h5.test",))  # the name is allowed, 127.0.0.1 is not
    target = f"http://127.0.0.1:{origin.port}/article/1"
    before = origin.hits["127.0.0.1"]
    with pytest.raises(BlockedAddress, match=r"address 127\.0\.0\.1 is loopback \(SSRF guard"):
        fetch(only_by_name, origin.url("h5.test", f"/to-loopback?to={target}"))
    assert origin.hits["h5.test"] >= 1 and origin.hits["127.0.0.1"] == before
