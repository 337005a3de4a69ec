"""Shapes the API promises (responses) and documents (requests), as pydantic models.

Request bodies are parsed by atlas.engine.items so the API, the CLI and batches share one
validation; the models here describe them in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from atlas.engine.items import PRIORITY_MAX, PRIORITY_MIN
from atlas.pipeline.document import DOCUMENT_CONTENT_TYPES
from atlas.store.models import DEAD_REASONS, ITEM_KINDS, STATES


class _Strict(BaseModel):
    # Request bodies: no unknown fields, and no coercion ("true" is not a boolean, "5" not a
    # number), as atlas.engine.items validates items; a float field still takes an integer.
    model_config = ConfigDict(extra="forbid", strict=True)


# Item ids (atlas.store.ids) and feed ids ("f_" + an item id): what a cursor may be.
ID_PATTERN = r"^[0-9a-f]{32}$"
FEED_ID_PATTERN = r"^f_[0-9a-f]{32}$"
# Text stored in its own column (source, idempotency key) must not hold NUL: PostgreSQL's text
# cannot, so on that backend one such item failed its whole group commit with a 503 (issue 17).
# Refused here on both backends, naming the field, as any other malformed value.
NO_NUL_PATTERN = r"^[^\x00]*$"
# Filters with a closed set of values, from the store's own lists: anything else is a 422 naming
# the parameter and the values it takes, not an empty answer.
ItemState = Literal[STATES]  # type: ignore[valid-type]
ItemKind = Literal[ITEM_KINDS]  # type: ignore[valid-type]
DeadReason = Literal[DEAD_REASONS]  # type: ignore[valid-type]


def _priority() -> Any:
    return Field(default=0, ge=PRIORITY_MIN, le=PRIORITY_MAX, description="Higher is processed first.")


class DocumentIn(_Strict):
    content: str = Field(pattern=r"\S", description="The document's text, Markdown or HTML (not blank).")
    content_type: Literal[DOCUMENT_CONTENT_TYPES] = "text/plain"  # type: ignore[valid-type]
    title: str | None = None
    source: str | None = Field(default=None, max_length=255, pattern=NO_NUL_PATTERN)
    priority: int = _priority()
    metadata: dict[str, Any] | None = None
    not_before: float | None = Field(default=None, description="Unix time before which not to process it.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255, pattern=NO_NUL_PATTERN)


class BatchIn(_Strict):
    items: list[DocumentIn | UrlIn | FeedItemIn] = Field(description="Items; each is validated on its own.")
    atomic: bool = Field(default=False, description="All or nothing: one bad item rejects the batch.")


class Accepted(BaseModel):
    id: str
    state: str
    status_url: str
    durability: Literal["fsync", "wal"]


class BatchEntry(BaseModel):
    index: int
    id: str | None = None
    error: str | None = None


class BatchResult(BaseModel):
    results: list[BatchEntry]
    durability: Literal["fsync", "wal"]


class Error(BaseModel):
    error: str


class AttemptView(BaseModel):
    attempt: int
    at: float
    outcome: str
    stage: str | None
    error_class: str | None
    message: str | None
    host: str | None


class ResultView(BaseModel):
    title: str | None
    canonical_url: str | None
    content_hash: str | None
    duplicate_of: str | None
    bytes: int | None


class ItemView(BaseModel):
    id: str
    kind: str
    state: str
    attempts: int
    source: str | None
    priority: int
    created_at: float
    updated_at: float
    done_at: float | None
    next_attempt_at: float
    dead_reason: str | None
    last_error: dict[str, Any] | None
    metadata: dict[str, Any] | None
    timings: dict[str, float] | None = None
    history: list[AttemptView] | None = None
    result: ResultView | None = None


class ItemPage(BaseModel):
    items: list[ItemView]
    next_cursor: str | None


class DLQGroupView(BaseModel):
    stage: str | None
    error_class: str | None
    host: str | None
    count: int
    oldest: float
    newest: float
    sample_ids: list[str]
    sample_message: str | None


class DLQView(BaseModel):
    items: list[ItemView]
    groups: list[DLQGroupView]
    next_cursor: str | None


class ReplayIn(_Strict):
    ids: list[str] = Field(default_factory=list, max_length=10_000)
    stage: str | None = Field(default=None, pattern=NO_NUL_PATTERN)
    error_class: str | None = Field(default=None, pattern=NO_NUL_PATTERN)
    host: str | None = Field(default=None, pattern=NO_NUL_PATTERN)
    kind: ItemKind | None = None
    source: str | None = Field(default=None, pattern=NO_NUL_PATTERN)
    reason: DeadReason | None = None
    dry_run: bool = False


class ReplayOut(BaseModel):
    matched: int
    replayed: int
    dry_run: bool


class MaintenanceIn(_Strict):
    enabled: bool
    reason: str | None = Field(default=None, max_length=500)


class MaintenanceView(BaseModel):
    enabled: bool
    reason: str | None = None
    since: float | None = None
    by: str | None = None  # who turned it on or off: user@host (atlas-ops) or the API key


class ComponentView(BaseModel):
    name: str
    status: Literal["healthy", "degraded", "unhealthy"]
    value: float | str | None
    threshold: float | str | None
    message: str


class HealthView(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checked_at: float
    components: list[ComponentView]
    version: str  # atlas.__version__
    release: str | None  # the deployment manager's release (<prefix>/releases/<release>), None outside one


class Status(BaseModel):
    status: str
    reasons: list[str] = Field(default_factory=list)


# -- content pipeline (issue 3): url and feed items, search, feed subscriptions -----------------

# What atlas.engine.items.parse_url accepts, as a pattern the OpenAPI document can state.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:{_PORT})?(/[!-~]*)?$"


class UrlIn(_Strict):
    url: str = Field(
        max_length=2048, pattern=URL_PATTERN, description="An http(s) page to fetch and extract."
    )
    source: str | None = Field(default=None, max_length=255, pattern=NO_NUL_PATTERN)
    priority: int = _priority()
    metadata: dict[str, Any] | None = None
    not_before: float | None = Field(default=None, description="Unix time before which not to process it.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255, pattern=NO_NUL_PATTERN)


class FeedItemIn(_Strict):
    feed: str = Field(
        max_length=2048, pattern=URL_PATTERN, description="An RSS/Atom feed: read now, then polled."
    )
    poll_interval_seconds: float | None = Field(default=None, ge=60, le=604_800)
    source: str | None = Field(default=None, max_length=255, pattern=NO_NUL_PATTERN)
    priority: int = _priority()
    metadata: dict[str, Any] | None = None
    not_before: float | None = Field(default=None, description="Unix time before which not to process it.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255, pattern=NO_NUL_PATTERN)


class AnyItemIn(RootModel[DocumentIn | UrlIn | FeedItemIn]):
    """One item: a document (content), a web page (url) or a feed subscription (feed)."""


class SearchHitView(BaseModel):
    item_id: str
    title: str | None
    url: str | None
    canonical_url: str | None
    snippet: str = Field(description="Matching passage; matched words are wrapped in **.")
    rank: float = Field(description="bm25 score: lower is a better match.")


class SearchPage(BaseModel):
    hits: list[SearchHitView]
    next_cursor: str | None


class FeedIn(_Strict):
    url: str = Field(max_length=2048, pattern=URL_PATTERN)
    poll_interval_seconds: float | None = Field(
        default=None, ge=60, le=604_800, description="Default: ATLAS_FEED_POLL_INTERVAL_SECONDS."
    )


class FeedView(BaseModel):
    id: str
    url: str
    title: str | None
    poll_interval_seconds: float
    next_poll_at: float
    last_polled_at: float | None
    last_status: str = Field(description="new (never polled), ok, not_modified, error or deferred.")
    last_error: str | None
    failures: int = Field(description="Failed polls in a row.")
    entries_seen: int
    created_at: float


class FeedPage(BaseModel):
    feeds: list[FeedView]
    next_cursor: str | None


BatchIn.model_rebuild()
