"""Cheap documents, settled by the engine itself in the transaction that claims them (issue 18).

Decoding, normalising and hashing a plain-text or Markdown document of a few kilobytes takes tens
of microseconds. Sent to a worker, the same document cost the supervisor more than that in
pickling, the pipe and bookkeeping, and the store wrote its row twice in two transactions (leased,
then done). Settled inline (Store.claim_settling), it is chosen, processed and stored in one
transaction: never leased, and a crash at any moment leaves it queued, since the transaction
commits all of it or nothing.

Only work that is cheap and bounded runs here, on the supervisor's store thread, while the
transaction holds the database's write lock: documents of `text/plain` or `text/markdown` up to
`inline_document_max_chars`, under the default pipeline. URLs, feeds, HTML (its parser is pure
Python and its cost grows with the markup), larger documents, items that a worker's death made
suspects, and every item of any other pipeline go to the workers as before, where a crash or a
hang costs one worker and is counted.

The stages are the default pipeline's own (DocumentDecode, Normalise), run by the worker's
`process`, so spans, stage timings, failures and their transitions are what a worker produces.

On SQLite, once the workers are up, the documents this would settle are handed to them instead
(atlas.engine.handoff): settled there, off the store thread. Settled here still: those a worker
could not store, traced ones, and all of them while no worker is ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Set
from typing import Any

from opentelemetry import trace

from atlas.engine import queue
from atlas.engine.handoff import result_of, settle_plain
from atlas.engine.messages import Job, Outcome
from atlas.engine.worker import process
from atlas.observability.tracing import may_record
from atlas.pipeline.base import Pipeline
from atlas.pipeline.document import DocumentDecode, Normalise
from atlas.store.models import HANDOFF, Claimed, Handoff, Transition

INLINE_TYPES = frozenset({"text/plain", "text/markdown"})
# Characters one claim settles at most; the rest of its documents go to the workers. The claim's
# transaction holds the database's write lock while it settles (and API commits wait for it).
CHARS_PER_CLAIM = 2 * 1024 * 1024


def finished_at_once(coro: Coroutine[Any, Any, Outcome]) -> Outcome | None:
    """The coroutine's result if it ran to its end without waiting on anything; otherwise None
    (it is closed: the item goes to a worker instead)."""
    try:
        coro.send(None)
    except StopIteration as end:
        result: Outcome = end.value
        return result
    coro.close()
    return None


class InlineDocuments:
    """Which documents are settled inline, and how; `claim()` gives one claim's `settle`."""

    def __init__(
        self,
        max_chars: int,
        policy: queue.RetryPolicy,
        wall: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self.max_chars = max_chars
        self.policy, self.wall, self.rand = policy, wall, rand
        self.pipeline = Pipeline(stages=(DocumentDecode(), Normalise()))
        self.tracer = trace.get_tracer("atlas.engine")

    def accepts(self, item: Claimed) -> bool:
        if item.kind != "document" or item.isolate or item.deaths:
            return False
        content = item.payload.get("content")
        return (
            isinstance(content, str)
            and len(content) <= self.max_chars
            and (item.payload.get("content_type") or "text/plain") in INLINE_TYPES
        )

    def claim(
        self, handoff: bool = False, lease_only: Set[str] = frozenset(), inline_only: Set[str] = frozenset()
    ) -> Settling:
        """One claim's `settle`. With `handoff`, the documents it would settle are handed out
        instead (HANDOFF: the engine's workers settle them, atlas.engine.handoff), but for those
        in `inline_only` (a worker did not store them: settled here, failures and all); those in
        `lease_only` (a worker died holding them) are leased, to be counted if they kill again."""
        return Settling(self, handoff, lease_only, inline_only)


class Settling:
    """One claim's `settle` (claim_settling calls it on the store thread for each chosen item):
    the item's transition, HANDOFF (to the workers, unleased), or None (leased, to a worker). It
    keeps what the loop records once the claim has ended, per claim, as two claims may run at
    once (PostgreSQL)."""

    def __init__(
        self, documents: InlineDocuments, handoff: bool, lease_only: Set[str], inline_only: Set[str]
    ) -> None:
        self.documents = documents
        self.lease_only, self.inline_only = lease_only, inline_only
        # Seconds spent processing documents: the claim's transaction less this is the
        # database's share, what the commit metrics measure.
        self.seconds = 0.0
        self.chars = 0  # of the documents settled so far (CHARS_PER_CLAIM)
        self.traced = may_record(documents.tracer)  # once a claim: it reads the environment
        self.handoff = handoff and not self.traced  # a traced document's spans are recorded here
        # Stage timings of the attempts that failed (a done transition carries its own, a
        # failed one does not), for the engine's stage metrics: item id -> {stage: seconds}.
        self._failed_timings: dict[str, dict[str, float]] = {}

    def __call__(self, item: Claimed) -> Transition | Handoff | None:
        docs = self.documents
        if not docs.accepts(item) or item.id in self.lease_only:
            return None
        if self.handoff and item.id not in self.inline_only:
            return HANDOFF
        if self.chars >= CHARS_PER_CLAIM:
            return None
        self.chars += len(item.payload["content"])
        started = time.perf_counter()
        try:
            if not self.traced:
                done = _stored_untraced(item)
                if done is not None:
                    return done
            # Failed, or traced: the pipeline through process(), which turns whatever a stage
            # raises into the attempt's failure (a raise here would undo the whole claim).
            outcome = finished_at_once(process(docs.pipeline, Job.of(item), docs.tracer))
            if outcome is None:
                return None
            transition = queue.after(item, outcome, policy=docs.policy, now=docs.wall(), rand=docs.rand)
            if transition.timings is None:
                self._failed_timings[item.id] = outcome.timings
            return transition
        finally:
            self.seconds += time.perf_counter() - started

    def timings(self, transition: Transition) -> dict[str, float]:
        """The stage timings of a transition this made."""
        return transition.timings or self._failed_timings.get(transition.item_id, {})


def _stored_untraced(item: Claimed) -> Transition | None:
    """What `process` makes of a cheap document that is stored, with no span to record, without
    its general machinery (job, context, coroutine and per-stage bookkeeping: ~15 of ~45 us a
    1 KB document, measured): atlas.engine.handoff, the same stage functions, result and stage
    timings. None when the document does not end stored: `process` then fails it as a worker
    would, with the failure's span, log and timings."""
    plain = settle_plain(item.id, item.payload)
    if plain is None:
        return None
    result, timings = result_of(plain)
    return queue.succeeded(item, result, timings)
