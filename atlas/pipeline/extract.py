"""Extraction: main text and metadata from a fetched HTML page, with trafilatura.

Charset: the HTTP header's when it decodes the body cleanly, else detected (charset-normalizer,
which also reads <meta charset>). Binary bodies (NUL bytes) and pages with no extractable main
text are permanent failures: an empty document is never stored. trafilatura and lxml run in a
thread so one large page does not stall the worker's other fetches.

charset-normalizer, lxml and trafilatura (with justext, htmldate, courlan: tens of MB resident) are
imported by the first page that needs them, not with this module: the default pipeline holds this
stage, and an engine that only sees documents should not load them (issue 18, worker RSS).
"""

from __future__ import annotations

import asyncio
import codecs
from dataclasses import dataclass

from atlas.errors import PermanentStageError
from atlas.pipeline.base import ItemContext
from atlas.pipeline.fetch import Fetched

SNIFF_BYTES = 1024


@dataclass(frozen=True)
class Page:
    title: str | None
    text: str
    language: str | None
    canonical_url: str | None
    author: str | None
    published: str | None


def decode(body: bytes, declared: str | None, url: str) -> str:
    """Body bytes to text; PermanentStageError for binary or undecodable bodies."""
    if b"\x00" in body[:SNIFF_BYTES] and not body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise PermanentStageError(f"{url}: body is binary (NUL bytes), not text", stage="extract")
    if declared:
        try:
            codecs.lookup(declared)
            return body.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label: detect instead
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    if best is None:
        raise PermanentStageError(f"{url}: cannot tell the body's character encoding", stage="extract")
    return str(best)


def extract_page(html: str, url: str) -> Page:
    """Main text and metadata of an HTML page; PermanentStageError when there is no main text."""
    import lxml.etree
    import lxml.html
    import trafilatura

    try:
        tree = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise PermanentStageError(f"{url}: not parseable as HTML ({exc})", stage="extract") from None
    language = (tree.get("lang") or "").split("-")[0].strip().lower() or None
    doc = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, include_tables=True, favor_precision=True
    )
    text = (getattr(doc, "text", None) or "").strip() if doc is not None else ""
    if not text:
        raise PermanentStageError(f"{url}: no extractable main text in the page", stage="extract")
    return Page(
        title=getattr(doc, "title", None),
        text=text,
        language=language or getattr(doc, "language", None),
        canonical_url=getattr(doc, "url", None),
        author=getattr(doc, "author", None),
        published=getattr(doc, "date", None),
    )


class Extract:
    name: str = "extract"
    kinds: tuple[str, ...] = ("url",)

    async def run(self, ctx: ItemContext) -> None:
        if ctx.result is not None:
            return  # not modified since the fetch that stored it
        got: Fetched = ctx.extra["fetched"]
        text = decode(got.body, got.charset, got.url)
        if got.content_type == "text/plain":
            ctx.text, ctx.title = text, None
            return
        page = await asyncio.to_thread(extract_page, text, got.url)
        ctx.title, ctx.text, ctx.language = page.title, page.text, page.language
        ctx.canonical_url = page.canonical_url
        ctx.extra["author"], ctx.extra["published"] = page.author, page.published
