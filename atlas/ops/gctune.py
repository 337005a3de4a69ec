"""The API process's garbage collector, set for ingest batches (issue 18).

A 1,000-item batch allocates ~7,000 container objects (decoded entries, items, payload dicts, rows,
results) that live until its commit, so with CPython's default threshold (700) one batch set off
~10 young collections, each walking the batches still in flight, and every few batches a full
collection walking the ~90,000 objects the imports leave (FastAPI, pydantic, OpenTelemetry). The
collector's own callbacks counted ~0.4 s of it in 45,000 batched items: a quarter of the API's CPU.

`settle_heap` runs once, before the server starts: it freezes what start-up built (gc.freeze: it is
never garbage, and full collections stop walking it) and lets the young generation grow to
YOUNG_THRESHOLD allocations, so most of a batch's objects are freed (by reference counting, which
is unchanged) before any collection sees them. Cycles are still collected, just less often.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
