"""Cheap items run in the supervisor's own process, when a round trip to a worker costs more.

A 1 KB document's stages (decode, normalise, hash) take tens of microseconds; sending it to a
worker and its result back (pickling both ways, two pipe writes, the bookkeeping of what each
worker holds) cost the supervisor more than that (bench/engine.py, profiled with py-spy), and the
supervisor is the engine's bottleneck. So an item runs here when every stage for its kind says it
is `inline` (pure CPU, no I/O, no await, linear in its input) and its content is small; anything
else, a suspect being isolated, or a stage that awaits after all, goes to a worker as before.

Nothing about safety changes: the result is settled through the same commit as a worker's, under
the supervisor's lease. Stage exceptions become Failed outcomes (atlas.engine.worker.process); a
crash of the supervisor itself lets the leases lapse and the items run again (and a document
that kept doing that would be dead-lettered after `max_lease_expiries`).
"""

from __future__ import annotations

from opentelemetry import trace

from atlas.engine.messages import Job, Outcome
from atlas.engine.worker import process
from atlas.pipeline.base import Pipeline
from atlas.store.models import Claimed

# Larger content goes to a worker: the supervisor must keep its heartbeats and commits on time.
INLINE_MAX_CHARS = 16_384


class Inline:
    """Runs the items `pipeline` allows inline; `run` returns None for the ones it does not."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.tracer = trace.get_tracer("atlas.engine")
        self._kinds: dict[str, bool] = {}

    def _inline_kind(self, kind: str) -> bool:
        known = self._kinds.get(kind)
        if known is None:
            stages = self.pipeline.for_kind(kind)
            known = self._kinds[kind] = bool(stages) and all(getattr(s, "inline", False) for s in stages)
        return known

    def run(self, item: Claimed) -> Outcome | None:
        """The item's outcome, or None when it must run in a worker (nothing has run then)."""
        if item.isolate or not self._inline_kind(item.kind):
            return None
        content = item.payload.get("content")
        if not isinstance(content, str) or len(content) > INLINE_MAX_CHARS:
            return None
        coroutine = process(self.pipeline, Job.of(item), self.tracer)
        try:
            coroutine.send(None)
        except StopIteration as finished:
            outcome: Outcome = finished.value
            return outcome
        # A stage awaited after all: stop it here and let a worker run the item from the start.
        coroutine.close()
        self._kinds[item.kind] = False
        return None
