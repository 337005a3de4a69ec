"""A cheap document's stored result, without the pipeline's machinery: the default pipeline's
DocumentDecode and Normalise stage functions, run directly (issue 18).

Used where documents are settled by the thousand: the engine's inline settling
(atlas.engine.inline) and a worker's Settle batches (atlas.engine.worker), which hand back each
result as one plain tuple (a SettledDocument) to keep the pipe's pickling cheap.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from atlas.pipeline.document import DocumentDecode, Normalise, content_hash, decode_document, normalise_text
from atlas.store.models import ContentResult, SettledDocument, maker

_CONTENT_RESULT = maker(ContentResult)


def settle_plain(item_id: str, payload: dict[str, Any]) -> SettledDocument | None:
    """What DocumentDecode then Normalise store for this document, with their timings; None when
    it does not end stored (no text left, a stage function raised): the pipeline's own run then
    fails it, with the failure's span, log and timings."""
    started = time.perf_counter()
    try:
        content_type, title, raw = decode_document(payload)
        decoded = time.perf_counter()
        text = normalise_text(raw)
        if not text:
            return None
        digest = content_hash(text)  # raises on text that is not UTF-8 (a lone surrogate)
    except Exception:  # the pipeline's run records the failure
        return None
    decode_s, normalise_s = decoded - started, time.perf_counter() - decoded
    timings = orjson.dumps({DocumentDecode.name: decode_s, Normalise.name: normalise_s}).decode()
    url = payload.get("url")  # a document's is a string (the API checks it)
    return (item_id, digest, text, content_type, title, url, decode_s, normalise_s, timings)


def result_of(plain: SettledDocument) -> tuple[ContentResult, dict[str, float]]:
    """The ContentResult and stage timings a settled document stands for."""
    _, digest, text, content_type, title, url, decode_s, normalise_s, _ = plain
    result = _CONTENT_RESULT(content_hash=digest, text=text, content_type=content_type, title=title, url=url)
    return result, {DocumentDecode.name: decode_s, Normalise.name: normalise_s}
