"""A pipeline is an ordered list of stages; each reads and fills in one ItemContext.

Stages run inside worker processes. A stage signals failure by raising: StageError (retry later),
PermanentStageError (dead-letter now); anything else is an unexpected, retryable failure recorded
under its class name. The stage that ends the pipeline leaves `ctx.result` set; storing it and
de-duplicating by content hash happen in the engine's commit, atomically with the item's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from atlas.store.models import ContentResult

Result = ContentResult


@dataclass
class ItemContext:
    id: str
    kind: str
    payload: dict[str, Any]
    attempt: int  # 1-based number of the attempt under way
    source: str | None = None
    metadata: dict[str, Any] | None = None
    # Filled in by stages as they go.
    content_type: str | None = None
    raw: str | None = None
    text: str | None = None
    title: str | None = None
    canonical_url: str | None = None
    language: str | None = None
    host: str | None = None
    content_hash: str | None = None
    result: ContentResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    name: str
    kinds: tuple[str, ...]  # item kinds the stage applies to

    async def run(self, ctx: ItemContext) -> None: ...


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]
    # Called about once a second in the worker; what it returns goes to the supervisor's per-host
    # metrics (atlas.engine.host_metrics). None: the pipeline has nothing to report.
    probe: Callable[[], dict[str, Any]] | None = None

    def for_kind(self, kind: str) -> list[Stage]:
        return [s for s in self.stages if kind in s.kinds]
