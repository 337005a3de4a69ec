"""Validating what producers hand in: a dict becomes a NewItem or an ItemError naming the field."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from atlas.errors import ItemError
from atlas.pipeline.document import DOCUMENT_CONTENT_TYPES
from atlas.store.models import NewItem

MAX_DOCUMENT_BYTES = 10 << 20
MAX_KEY_CHARS = 255
_COMMON = {"source", "priority", "metadata", "not_before", "idempotency_key"}
_DOCUMENT_FIELDS = {"content", "content_type", "title"} | _COMMON
_URL_FIELDS = {"url"} | _COMMON
_FEED_FIELDS = {"feed", "poll_interval_seconds"} | _COMMON
MAX_URL_CHARS = 2048
MIN_POLL_INTERVAL_SECONDS = 60.0
# The documented bound of `priority` (the OpenAPI document states it from here).
PRIORITY_MIN, PRIORITY_MAX = -100, 100
# Values and types in error messages as the producer wrote them in JSON, not as Python names them.
_JSON_SPELLING = {True: "true", False: "false", None: "null"}
_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def parse_url(value: Any, field: str) -> str:
    """An absolute http(s) URL with a host, at most MAX_URL_CHARS long; ItemError naming `field`."""
    if not isinstance(value, str):
        raise ItemError(f"{field}: expected a string, got {_json_type(value)}")
    url = value.strip()
    if len(url) > MAX_URL_CHARS:
        raise ItemError(f"{field}: longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ItemError(f"{field}: not a valid URL ({exc}): {url[:200]!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ItemError(f"{field}: expected an absolute http or https URL, got {url[:200]!r}")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ItemError(f"{field}: must not contain spaces or control characters")
    _utf8(url, "", field)
    return url


def request_fingerprint(data: Any) -> str:
    """SHA-256 (hex) of a request as sent: JSON with sorted keys and no spaces."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def with_request_hash(item: NewItem, data: Any) -> NewItem:
    """`item` with the fingerprint of `data` (the request that made it, key included) when it has
    an idempotency key: a repeat of the key with another fingerprint is a conflict, not a replay.
    Every door (API, batches, CLI) fingerprints this way, so they judge repeats alike."""
    if item.idempotency_key is None:
        return item
    return replace(item, request_hash=request_fingerprint(data))


def _where(index: int | None) -> str:
    return "" if index is None else f"items[{index}]."


def parse_item(data: Any, *, index: int | None = None, trace_context: str | None = None) -> NewItem:
    """Validate one item as a producer sends it. Raises ItemError naming the field at fault."""
    at = _where(index)
    if not isinstance(data, dict):
        raise ItemError(f"{at.rstrip('.') or 'item'}: expected a JSON object, got {_json_type(data)}")
    if "url" in data:
        return _parse_kind(data, at, "url", _URL_FIELDS, trace_context)
    if "feed" in data:
        return _parse_kind(data, at, "feed", _FEED_FIELDS, trace_context)
    if "content" not in data:
        raise ItemError(f"{at}content: required for a document item (or give url or feed)")
    if not _DOCUMENT_FIELDS.issuperset(data):  # checked without building a set: batches are hot
        unknown = sorted(set(data) - _DOCUMENT_FIELDS)
        raise ItemError(f"{at}{unknown[0]}: unknown field (allowed: {', '.join(sorted(_DOCUMENT_FIELDS))})")
    content = data["content"]
    if not isinstance(content, str):
        raise ItemError(f"{at}content: expected a string, got {_json_type(content)}")
    if not content or content.isspace():
        raise ItemError(f"{at}content: must not be empty")
    if len(_utf8(content, at, "content")) > MAX_DOCUMENT_BYTES:
        raise ItemError(f"{at}content: larger than {MAX_DOCUMENT_BYTES} bytes")
    content_type = data.get("content_type", "text/plain")
    if content_type not in DOCUMENT_CONTENT_TYPES:
        raise ItemError(
            f"{at}content_type: expected one of {', '.join(DOCUMENT_CONTENT_TYPES)}, "
            f"got {_quote(content_type)}"
        )
    payload: dict[str, Any] = {"content": content, "content_type": content_type}
    if data.get("title") is not None:
        if not isinstance(data["title"], str):
            raise ItemError(f"{at}title: expected a string")
        payload["title"] = data["title"]
    if _COMMON.isdisjoint(data):  # nothing but the content: the defaults, without _common's checks
        return NewItem(kind="document", payload=payload, trace_context=trace_context)
    return NewItem(kind="document", payload=payload, trace_context=trace_context, **_common(data, at))


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for "expected ..., got ..." (null, not NoneType)."""
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _utf8(text: str, at: str, field: str) -> bytes:
    """UTF-8 of a string the store keeps as text; a lone surrogate (JSON "\\ud800") is refused."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ItemError(f"{at}{field}: not valid Unicode (lone surrogate at character {exc.start})") from None


def _column_text(text: str, at: str, field: str) -> None:
    """A string the store keeps in a column of its own (source, idempotency key): valid UTF-8 and
    no NUL, which PostgreSQL's text cannot hold. Refused on both backends alike; on PostgreSQL it
    failed the item's whole group commit with a 503 (issue 17). Payload text is JSON (escaped)."""
    if (nul := text.find("\x00")) >= 0:
        raise ItemError(f"{at}{field}: contains a NUL character (at character {nul})")
    _utf8(text, at, field)


def _parse_kind(
    data: dict[str, Any], at: str, kind: str, allowed: set[str], trace_context: str | None
) -> NewItem:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ItemError(
            f"{at}{unknown[0]}: unknown field for a {kind} item (allowed: {', '.join(sorted(allowed))})"
        )
    payload: dict[str, Any] = {"url": parse_url(data[kind], f"{at}{kind}")}
    interval = data.get("poll_interval_seconds")
    if interval is not None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not (MIN_POLL_INTERVAL_SECONDS <= interval <= 7 * 86_400)
        ):
            raise ItemError(
                f"{at}poll_interval_seconds: expected a number {MIN_POLL_INTERVAL_SECONDS:g}-{7 * 86_400}, "
                f"got {_quote(interval)}"
            )
        payload["poll_interval_seconds"] = float(interval)
    return NewItem(kind=kind, payload=payload, trace_context=trace_context, **_common(data, at))


def _quote(value: Any, limit: int = 40) -> str:
    """A value for an error message, cut short: a 300-digit number is not worth echoing whole.
    true, false and null are spelled as the producer sent them (JSON), not as Python's repr."""
    if value is None or isinstance(value, bool):
        return _JSON_SPELLING[value]
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


def _common(data: dict[str, Any], at: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    source = data.get("source")
    if source is not None and (not isinstance(source, str) or len(source) > MAX_KEY_CHARS):
        raise ItemError(f"{at}source: expected a string of at most {MAX_KEY_CHARS} characters")
    if source is not None:
        _column_text(source, at, "source")
    out["source"] = source
    sent = priority = data.get("priority", 0)
    if isinstance(priority, float) and priority.is_integer() and PRIORITY_MIN <= priority <= PRIORITY_MAX:
        priority = int(priority)  # JSON has one number type: 3.0 is the integer 3
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise ItemError(
            f"{at}priority: expected an integer {PRIORITY_MIN}..{PRIORITY_MAX}, got {_quote(sent)}"
        )
    out["priority"] = priority
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ItemError(f"{at}metadata: expected an object")
    out["metadata"] = metadata
    not_before = data.get("not_before")
    if not_before is not None and (not isinstance(not_before, int | float) or isinstance(not_before, bool)):
        raise ItemError(f"{at}not_before: expected Unix seconds")
    out["not_before"] = float(not_before) if not_before is not None else None
    key = data.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS):
        raise ItemError(
            f"{at}idempotency_key: expected a non-empty string of at most {MAX_KEY_CHARS} characters"
        )
    if key is not None:
        _column_text(key, at, "idempotency_key")
    out["idempotency_key"] = key
    return out
