"""Cheap documents settled by the workers, off the store thread (issue 18).

Settled inline (atlas.engine.inline), a document's decoding, normalising and hashing ran on the
supervisor's store thread, the engine's bottleneck, inside the claim's write transaction. The claim
now hands such documents out instead (Store `HandsOff`: SQLite and PostgreSQL): it leaves them queued and
unleased, and the store passes over them in this process's next claims until they are written or
forgotten. The supervisor sends a claim's worth to one worker in one Settle message; the worker
runs `settle_plain` on each and answers one Settled with a plain tuple per stored document (a
SettledDocument: cheap to pickle, and the values the store writes); Store.settle_handed writes a
batch in one transaction, each row only if it is still queued, unleased and at the attempts it was
handed at (another engine, which never knew it was handed, may have taken it meanwhile). On
PostgreSQL the worker also makes each document's search index tsvector (atlas.store.tsvector,
`handed_tsvector`): that Python was most of what the supervisor's store threads did, under one GIL.

Nothing is leased, so a crash anywhere leaves the documents queued. What a worker cannot store (no
text left, a stage raised) a later claim settles inline, where the pipeline records the failure;
what a worker held when it died is leased next time, so a document that kills workers is counted
as a worker's items are. A traced document is settled inline, where its spans are recorded.

`settle_plain` is also the inline path's: the default pipeline's DocumentDecode and Normalise
stage functions, without the pipeline's machinery, with the same result and stage timings.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from atlas.pipeline.document import DocumentDecode, Normalise, content_hash, decode_document, normalise_text
from atlas.store.models import ContentResult, SettledDocument, maker
from atlas.store.tsvector import tsvector

_CONTENT_RESULT = maker(ContentResult)


def settle_plain(
    item_id: str, payload: dict[str, Any], with_tsvector: bool = False
) -> SettledDocument | None:
    """What DocumentDecode then Normalise store for this document, with their timings; None when
    it does not end stored (no text left, a stage function raised): the pipeline's own run then
    fails it, with the failure's span, log and timings. `with_tsvector`: with its search index's
    tsvector (the store's `handed_tsvector`)."""
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
    tsv = tsvector(title, text) if with_tsvector else None
    return (item_id, digest, text, content_type, title, url, decode_s, normalise_s, timings, tsv)


def result_of(plain: SettledDocument) -> tuple[ContentResult, dict[str, float]]:
    """The ContentResult and stage timings a settled document stands for."""
    _, digest, text, content_type, title, url, decode_s, normalise_s, _, _ = plain
    result = _CONTENT_RESULT(content_hash=digest, text=text, content_type=content_type, title=title, url=url)
    return result, {DocumentDecode.name: decode_s, Normalise.name: normalise_s}
