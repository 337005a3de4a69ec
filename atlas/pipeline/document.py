"""Stages for inline documents: decode the given content to text, normalise it, hash it."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from html.parser import HTMLParser
from typing import Any

from atlas.errors import PermanentStageError
from atlas.pipeline.base import ItemContext, Result

DOCUMENT_CONTENT_TYPES = ("text/plain", "text/markdown", "text/html")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def normalise_text(text: str) -> str:
    """NFC, unified newlines, runs of spaces folded, at most one blank line, trimmed lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    blank = True  # drops leading blank lines
    for line in text.split("\n"):
        folded = _fold(line)
        if folded:
            out.append(folded)
            blank = False
        elif not blank:
            out.append("")
            blank = True
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def _fold(line: str) -> str:
    """`line` trimmed, its runs of spaces folded to one. str.split() knows every Unicode space,
    in C, but makes an object per word: ~10 us a 1 KB line, a tenth of what settling a document
    inline costs. An ASCII line whose only space is " " and that holds no double space once
    trimmed is folded already; that check is a few scans in C (~2 us)."""
    if line.isascii():
        trimmed = line.strip(" ")
        if "  " not in trimmed and not (
            # ASCII's other spaces for str.split() (a line holds no "\n" or "\r")
            "\t" in line
            or "\x0b" in line
            or "\x0c" in line
            or "\x1c" in line
            or "\x1d" in line
            or "\x1e" in line
            or "\x1f" in line
        ):
            return trimmed
    return " ".join(line.split())


def content_hash(normalised: str) -> str:
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "tr",
            "section",
            "article",
            "header",
            "footer",
            "blockquote",
            "pre",
            "ul",
            "ol",
            "table",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, visible text) of an HTML document, scripts and styles dropped."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    title = normalise_text("".join(parser.title_parts)) or None
    return title, "".join(parser.parts)


def decode_document(payload: dict[str, Any]) -> tuple[str, str | None, str]:
    """(content type, title, text) of a document's payload, before normalisation; raises
    PermanentStageError when it holds no text."""
    content_type = str(payload.get("content_type") or "text/plain")
    raw = payload.get("content")
    if not isinstance(raw, str):
        raise PermanentStageError("document has no text content", stage=DocumentDecode.name)
    title: str | None = None
    text = raw
    if content_type == "text/html":
        title, text = html_to_text(raw)
    elif content_type == "text/markdown":
        heading = _MD_HEADING.search(raw)
        title = heading.group(1) if heading else None
    if title is None and isinstance(payload.get("title"), str):
        title = payload["title"]
    return content_type, title, text


class DocumentDecode:
    """Turn inline content into plain text and a title, by content type."""

    name: str = "decode"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        ctx.content_type, ctx.title, ctx.text = decode_document(ctx.payload)
        ctx.raw = ctx.payload["content"]


class Normalise:
    """Normalise the text and hash it; an item with no text left is a permanent failure."""

    name: str = "normalise"
    kinds: tuple[str, ...] = ("document", "url", "feed")

    async def run(self, ctx: ItemContext) -> None:
        if ctx.result is not None:
            return  # an earlier stage settled it (a URL not modified since it was stored)
        text = normalise_text(ctx.text or "")
        if not text:
            raise PermanentStageError("no text left after normalisation", stage=self.name)
        ctx.text = text
        ctx.content_hash = content_hash(text)
        ctx.result = Result(
            content_hash=ctx.content_hash,
            text=text,
            content_type=ctx.content_type,
            title=ctx.title,
            canonical_url=ctx.canonical_url,
            language=ctx.language,
            author=ctx.extra.get("author"),
            published=ctx.extra.get("published"),
            url=ctx.payload.get("url"),
            etag=ctx.extra.get("etag"),
            last_modified=ctx.extra.get("last_modified"),
        )
