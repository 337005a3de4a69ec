"""Fetching a URL safely: httpx with timeouts, a size cap, a redirect limit and the SSRF guard.

Every hop (the first request and each redirect) is vetted by atlas.pipeline.ssrf and connected to
the vetted address (the Host header and TLS SNI keep the name), and goes through the per-host
gate (breaker, politeness, adaptive concurrency) when one is given. The body is read as a stream
and decompressed here with a bounded zlib window, so neither a multi-GB response nor a gzip bomb
can take more than `max_body_bytes` of memory; a whole-fetch deadline bounds slow-loris origins.

Failures: 5xx, 429, 408, timeouts and connection errors are StageError (retried); other 4xx, a
refused address, a disallowed content type, an oversized or undecodable body and redirect loops
are PermanentStageError (dead-lettered at once); an open breaker or a long politeness wait is
Deferred (no attempt spent).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from atlas import __version__
from atlas.errors import PermanentStageError, StageError
from atlas.pipeline.hosts import HostGate
from atlas.pipeline.ssrf import AllowList, Resolver, system_resolver, vet
from atlas.settings import Settings
from atlas.store.models import ContentResult

if TYPE_CHECKING:
    # httpx (with httpcore, h11, anyio's backends) is imported by the first fetch, not with this
    # module: an engine that only ever sees documents builds this pipeline too, and its workers
    # should not carry an HTTP client they never use (issue 18, worker RSS).
    import httpx

USER_AGENT = f"Atlas/{__version__} (+https://github.com/atlas-ingest/atlas; self-hosted ingest engine)"
PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
# The types feeds are really served with: the registered ones, the x- forms servers still send
# (Debian's /etc/mime.types and so Python's http.server say application/x-rss+xml for .rss), and
# generic XML.
FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/rdf+xml",
    "application/x-rss+xml",
    "application/x-atom+xml",
    "application/xml",
    "text/xml",
)
# Types that say nothing about the document (or no type at all, ""): a feed served so is taken
# only when its body looks like one (atlas.pipeline.feeds.sniff_feed).
FEED_GENERIC_TYPES = (
    "",
    "text/plain",
    "text/html",
    "application/octet-stream",
    "binary/octet-stream",
    "application/json",
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 20.0
    total_timeout_seconds: float = 60.0
    max_body_bytes: int = 10 << 20
    max_redirects: int = 5
    user_agent: str = USER_AGENT

    @classmethod
    def from_settings(cls, s: Settings) -> FetchPolicy:
        return cls(
            connect_timeout_seconds=s.fetch_connect_timeout_seconds,
            read_timeout_seconds=s.fetch_read_timeout_seconds,
            total_timeout_seconds=s.fetch_total_timeout_seconds,
            max_body_bytes=s.fetch_max_body_bytes,
            max_redirects=s.fetch_max_redirects,
        )


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str | None
    charset: str | None
    body: bytes
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def _media_type(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    msg = Message()
    msg["content-type"] = header
    charset = msg.get_param("charset")
    return msg.get_content_type(), charset if isinstance(charset, str) else None


class _Decoder:
    """Content-Encoding decoding with a hard cap on the output: a gzip bomb stops at the cap."""

    def __init__(self, encoding: str, limit: int, url: str, host: str) -> None:
        enc = encoding.strip().lower()
        self.limit, self.url, self.host = limit, url, host
        self.out = bytearray()
        if enc in ("", "identity"):
            self.z: Any = None
        elif enc in ("gzip", "x-gzip", "deflate"):
            self.z = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, told by the header
        else:
            raise PermanentStageError(
                f"{url}: unsupported Content-Encoding {encoding!r}", stage="fetch", host=host
            )

    def feed(self, chunk: bytes) -> None:
        if self.z is None:
            self.out += chunk
            self._check()
            return
        try:
            while chunk:
                self.out += self.z.decompress(chunk, self.limit - len(self.out) + 1)
                self._check()
                chunk = self.z.unconsumed_tail
        except zlib.error as exc:
            raise PermanentStageError(
                f"{self.url}: corrupt compressed body ({exc})", stage="fetch", host=self.host
            ) from None

    def _check(self) -> None:
        if len(self.out) > self.limit:
            raise PermanentStageError(
                f"{self.url}: body larger than {self.limit} bytes (decoded)", stage="fetch", host=self.host
            )


class Fetcher:
    """One httpx client per worker event loop; `fetch` is safe to call concurrently."""

    def __init__(
        self,
        policy: FetchPolicy,
        allow: AllowList,
        *,
        resolver: Resolver = system_resolver,
        gate: HostGate | None = None,
    ) -> None:
        self.policy, self.allow, self.resolver, self.gate = policy, allow, resolver, gate
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            # httpx logs every request at INFO: one line per fetch is noise at thousands a minute
            # (and measurable CPU); failures are logged by the engine with the item and the reason.
            logging.getLogger("httpx").setLevel(logging.WARNING)
            p = self.policy
            self._client = httpx.AsyncClient(
                follow_redirects=False,  # every hop is vetted here
                trust_env=False,  # a proxy from the environment would bypass the guard
                timeout=httpx.Timeout(
                    connect=p.connect_timeout_seconds,
                    read=p.read_timeout_seconds,
                    write=p.read_timeout_seconds,
                    pool=p.total_timeout_seconds,
                ),
                headers={"User-Agent": p.user_agent, "Accept-Encoding": "gzip, deflate"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(
        self,
        url: str,
        *,
        accept: tuple[str, ...] = PAGE_TYPES,
        etag: str | None = None,
        last_modified: str | None = None,
        generic: tuple[str, ...] = (),
    ) -> Fetched:
        """GET `url` following at most max_redirects redirects. Raises as the module says.

        `accept` are the media types asked for and taken; `generic` are taken too (not asked
        for) and left to the caller to sniff: Fetched.content_type says which it was.
        """
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        try:
            async with asyncio.timeout(self.policy.total_timeout_seconds):
                return await self._follow(url, accept, etag, last_modified, generic)
        except TimeoutError:
            raise StageError(
                f"{url}: fetch took longer than {self.policy.total_timeout_seconds:g}s",
                stage="fetch",
                host=host,
            ) from None

    async def _follow(
        self,
        url: str,
        accept: tuple[str, ...],
        etag: str | None,
        last_modified: str | None,
        generic: tuple[str, ...],
    ) -> Fetched:
        seen: list[str] = []
        current = url
        while True:
            if current in seen:
                raise PermanentStageError(
                    f"{url}: redirect loop ({' -> '.join([*seen, current])})", stage="fetch"
                )
            if len(seen) > self.policy.max_redirects:
                raise PermanentStageError(
                    f"{url}: more than {self.policy.max_redirects} redirects", stage="fetch"
                )
            seen.append(current)
            result = await self._hop(
                current, accept, etag if len(seen) == 1 else None, last_modified, generic
            )
            if isinstance(result, Fetched):
                return result
            current = result

    async def _hop(
        self,
        url: str,
        accept: tuple[str, ...],
        etag: str | None,
        last_modified: str | None,
        generic: tuple[str, ...],
    ) -> Fetched | str:
        # The guard reads the URL as the standard library does, before httpx (which rejects some
        # numeric forms itself): whatever spelling a host has, it is vetted first.
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        except ValueError as exc:
            raise PermanentStageError(f"invalid URL {url!r}: {exc}", stage="fetch") from None
        if scheme not in ("http", "https") or not host:
            raise PermanentStageError(
                f"{url!r}: only http and https URLs with a host are fetched", stage="fetch"
            )
        address = await vet(host, port or (443 if scheme == "https" else 80), self.resolver, self.allow)
        import httpx

        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise PermanentStageError(f"invalid URL {url!r}: {exc}", stage="fetch", host=host) from None
        host = target.host
        headers = {"Host": target.netloc.decode("ascii"), "Accept": ", ".join(accept) + ", */*;q=0.1"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        request = self._http().build_request(
            "GET",
            target.copy_with(host=address),
            headers=headers,
            extensions={"sni_hostname": host} if target.scheme == "https" else {},
        )
        if self.gate is None:
            return await self._send(request, url, host, accept + generic, None)
        async with self.gate.call(host) as call:
            return await self._send(request, url, host, accept + generic, call)

    async def _send(
        self, request: httpx.Request, url: str, host: str, accept: tuple[str, ...], call: Any
    ) -> Fetched | str:
        import httpx

        try:
            response = await self._http().send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise StageError(f"{url}: timed out ({type(exc).__name__})", stage="fetch", host=host) from None
        except httpx.TransportError as exc:
            raise StageError(f"{url}: {type(exc).__name__}: {exc}", stage="fetch", host=host) from None
        try:
            status = response.status_code
            if status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise PermanentStageError(f"{url}: {status} without a Location", stage="fetch", host=host)
                if call is not None:
                    call.ok = True
                return str(httpx.URL(url).join(location))
            if status >= 500 or status in RETRYABLE_STATUSES:
                raise StageError(f"{url}: HTTP {status}", stage="fetch", host=host)
            if call is not None:
                call.ok = True  # the host answered sensibly, whatever we make of the answer
            if status == 304:
                return Fetched(url, 304, None, None, b"", response.headers.get("etag"), None)
            if status >= 400 or status < 200:
                raise PermanentStageError(f"{url}: HTTP {status}", stage="fetch", host=host)
            media, charset = _media_type(response.headers.get("content-type"))
            if (media or "") not in accept:
                raise PermanentStageError(
                    f"{url}: content type {media or 'missing'!s} is not one of "
                    f"{', '.join(a for a in accept if a)}",
                    stage="fetch",
                    host=host,
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.policy.max_body_bytes:
                raise PermanentStageError(
                    f"{url}: Content-Length {declared} is over {self.policy.max_body_bytes} bytes",
                    stage="fetch",
                    host=host,
                )
            decoder = _Decoder(
                response.headers.get("content-encoding", ""), self.policy.max_body_bytes, url, host
            )
            try:
                async for chunk in response.aiter_raw():
                    decoder.feed(chunk)
            except httpx.TimeoutException:
                if call is not None:
                    call.ok = False
                raise StageError(f"{url}: timed out reading the body", stage="fetch", host=host) from None
            except httpx.TransportError as exc:
                if call is not None:
                    call.ok = False
                raise StageError(f"{url}: body cut short: {exc}", stage="fetch", host=host) from None
            return Fetched(
                url,
                status,
                media,
                charset,
                bytes(decoder.out),
                response.headers.get("etag"),
                response.headers.get("last-modified"),
            )
        finally:
            await response.aclose()


class Fetch:
    """Stage: fetch the item's URL (a page for `url` items, the feed document for `feed` items)."""

    name: str = "fetch"
    kinds: tuple[str, ...] = ("url", "feed")

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher

    async def run(self, ctx: Any) -> None:
        url = str(ctx.payload["url"])
        ctx.host = urlsplit(url).hostname
        known: dict[str, Any] = ctx.payload.get("validators") or {}
        got = await self.fetcher.fetch(
            url,
            accept=FEED_TYPES if ctx.kind == "feed" else PAGE_TYPES,
            etag=known.get("etag"),
            last_modified=known.get("last_modified"),
            generic=FEED_GENERIC_TYPES if ctx.kind == "feed" else (),
        )
        if got.not_modified:
            if not known.get("content_hash"):
                raise PermanentStageError(
                    f"{url}: 304 Not Modified to an unconditional request", stage=self.name
                )
            # Unchanged since the fetch that stored it: the store makes this item a duplicate of it.
            ctx.result = ContentResult(content_hash=known["content_hash"], text="", url=url)
            return
        ctx.extra["fetched"], ctx.extra["final_url"] = got, got.url
        ctx.extra["etag"], ctx.extra["last_modified"] = got.etag, got.last_modified
        ctx.content_type = got.content_type
