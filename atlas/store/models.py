"""Plain records that cross the store seam. No behaviour, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any, NamedTuple, TypeVar

_new, _set = object.__new__, object.__setattr__
_R = TypeVar("_R")
_MAKERS: dict[type, Callable[..., Any]] = {}


def quick(cls: type[_R], **values: Any) -> _R:
    """`cls(**values)` for a frozen dataclass with no default factory, its fields' dict set in one
    step. A frozen __init__ calls object.__setattr__ once per field: ~4 us for eleven fields,
    against ~1.5 us this way, and the engine makes three such records for every document it
    settles inline (issue 18). A name that is not a field, or a field with no default left out,
    raises TypeError as __init__ would."""
    return maker(cls)(**values)


def maker(cls: type[_R]) -> Callable[..., _R]:
    """`quick` for `cls` as a function of the fields, to keep where records are made by the
    thousand: called directly it skips quick's own packing of the keywords (~1 us of the ~2.8 a
    record of eleven fields costs, measured)."""
    made = _MAKERS.get(cls)
    if made is None:
        made = _MAKERS[cls] = _maker(cls)
    return made


def _maker(cls: type) -> Callable[..., Any]:
    """A function taking `cls`'s fields as keyword arguments (Python checks them, in C) that makes
    the record with its dict set at once; made once a class, as dataclasses makes __init__."""
    specs = fields(cls)
    assert all(f.default_factory is MISSING for f in specs), cls  # a factory would be shared
    names = [f.name for f in specs]
    # Field names become the function's parameters: none may be a name its body uses.
    assert all(n.isidentifier() and n not in ("item", "cls", "_new", "_set") for n in names), cls
    defaults = {f"_default_{f.name}": f.default for f in specs if f.default is not MISSING}
    params = ", ".join(f"{n}=_default_{n}" if f"_default_{n}" in defaults else n for n in names)
    values = ", ".join(f"{n!r}: {n}" for n in names)
    source = (
        f"def {cls.__name__}(*, {params}):\n"
        f"    item = _new(cls)\n    _set(item, '__dict__', {{{values}}})\n    return item\n"
    )
    namespace: dict[str, Any] = {"_new": _new, "_set": _set, "cls": cls, **defaults}
    exec(source, namespace)  # our own field names, checked above
    return namespace[cls.__name__]  # type: ignore[no-any-return]


ITEM_KINDS = ("document", "url", "feed")
STATES = ("queued", "leased", "done", "duplicate", "dead")
FINAL_STATES = ("done", "duplicate", "dead")
# Why an item is dead (its dead_reason): retries used up, a permanent error, its worker died with
# it max_deaths times, or its lease expired max_lease_expiries times (atlas.engine.queue,
# atlas.store.transitions). The DLQ filters accept only these.
DEAD_REASONS = ("max_attempts", "permanent", "quarantined", "lease_expired")
DEAD_MAX_ATTEMPTS, DEAD_PERMANENT, DEAD_QUARANTINED, DEAD_LEASE_EXPIRED = DEAD_REASONS
# Shared keys in the kv table, read by every process.
MAINTENANCE_KEY = "maintenance"  # JSON {"enabled", "reason", "since"}
HEARTBEAT_KEY_PREFIX = "engine.heartbeat."  # + engine owner -> Unix time of its last heartbeat
# A search cursor (rank:seq) as both backends hand it out; the API validates input against it.
CURSOR_PATTERN = r"^-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?:[0-9]{1,18}$"
BACKUP_KEY = "backup.last"  # JSON {"finished_at": unix seconds, "bytes", "path"}; the exporter reads it


@dataclass(frozen=True)
class NewItem:
    """An item as a producer hands it in, already validated (see atlas.engine.items)."""

    kind: str
    payload: dict[str, Any]
    source: str | None = None
    idempotency_key: str | None = None
    priority: int = 0
    metadata: dict[str, Any] | None = None
    not_before: float | None = None
    trace_context: str | None = None
    request_hash: str | None = None  # fingerprint of the request, checked on idempotent repeats

    @classmethod
    def document(
        cls,
        payload: dict[str, Any],
        source: str | None,
        priority: int,
        metadata: dict[str, Any] | None,
        not_before: float | None,
        trace_context: str | None,
    ) -> NewItem:
        """A document without idempotency key from values already validated (atlas.api.batchbody).

        Equal to NewItem("document", ...) in every way, built by `quick`: about half the cost,
        measured over the 1,000 items of a batch (issue 18).
        """
        return quick(
            cls,
            kind="document",
            payload=payload,
            source=source,
            priority=priority,
            metadata=metadata,
            not_before=not_before,
            trace_context=trace_context,
        )


@dataclass(frozen=True)
class PreparedItems:
    """Items with their insert rows already built (ids, JSON text: atlas.store.itemrows
    prepare_items), so the one thread that commits for every request (atlas.api.groupcommit) only
    checks idempotency keys and binds. `rows[i]` belongs to `items[i]`; a row whose idempotency key
    turns out to be known is dropped at enqueue, its id never used."""

    items: Sequence[NewItem]
    rows: Sequence[tuple[Any, ...]]

    @staticmethod
    def join(parts: Sequence[PreparedItems]) -> PreparedItems:
        if len(parts) == 1:
            return parts[0]
        return PreparedItems(
            [item for p in parts for item in p.items], [row for p in parts for row in p.rows]
        )


@dataclass(frozen=True)
class EnqueueResult:
    id: str
    created: bool  # False: the idempotency key already named this item
    request_hash: str | None = None  # of the request that created the item


@dataclass(frozen=True)
class Claimed:
    """An item leased to one engine; `token` must accompany its transition."""

    id: str
    kind: str
    source: str | None
    priority: int
    payload: dict[str, Any]
    metadata: dict[str, Any] | None
    attempts: int
    deaths: int
    isolate: bool
    trace_context: str | None
    created_at: float
    token: str


@dataclass(frozen=True)
class ErrorInfo:
    stage: str
    error_class: str
    message: str
    host: str | None = None


@dataclass(frozen=True)
class ContentResult:
    content_hash: str
    text: str
    content_type: str | None = None
    title: str | None = None
    canonical_url: str | None = None
    language: str | None = None
    author: str | None = None
    published: str | None = None  # as the page states it (ISO 8601 date when extractable)
    url: str | None = None  # the URL the item named (url and feed kinds)
    etag: str | None = None  # validators the fetch answered with, for the next conditional request
    last_modified: str | None = None


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    title: str | None
    url: str | None
    canonical_url: str | None
    snippet: str
    rank: float  # bm25: lower is a better match


@dataclass(frozen=True)
class Transition:
    """Where a leased item goes next. Decided by atlas.engine.queue, applied by the store.

    `outcome` names the attempt's ending for the history (done, retry, dead, died, timeout,
    released); `state` is the new item state (queued, done, dead; done may become duplicate).
    """

    item_id: str
    token: str
    state: str
    outcome: str
    attempts_inc: int = 1
    deaths_inc: int = 0
    isolate: bool = False
    next_attempt_at: float = 0.0
    error: ErrorInfo | None = None
    result: ContentResult | None = None
    dead_reason: str | None = None
    timings: dict[str, float] | None = None


class Handoff(Enum):
    """claim_settling's `settle` answer for an item settled elsewhere, later (Store.settle_handed):
    left queued and unleased, and out of this process's next claims until then."""

    LATER = "later"


HANDOFF = Handoff.LATER

# A handed document's stored result, as a worker sends it (a plain tuple: hundreds cross a pipe
# at once) and Store.settle_handed writes it: item id, content hash, text, content type, title,
# the payload's URL, its stage timings (decode and normalise seconds), those as JSON, and the
# search index's tsvector when the store asks the workers for it (PostgreSQL's: atlas.store.tsvector).
SettledDocument = tuple[str, str, str, str, "str | None", "str | None", float, float, str, "bytes | None"]

# claim_settling's `settle`: a chosen item's transition when it was settled at once (it never
# leaves the claim's transaction), HANDOFF, or None to lease it as claim() does.
Settle = Callable[[Claimed], "Transition | Handoff | None"]


class ClaimSettled(NamedTuple):
    """What claim_settling did: items leased (as claim() returns them), and items settled in the
    claim's own transaction with their transitions and outcomes (as apply() returns them), of
    `chosen` items (those neither settled nor leased, past its lease limit, stay queued)."""

    leased: list[Claimed]
    settled: list[tuple[Transition, Claimed]]
    applied: dict[str, str]
    chosen: int
    handed: Sequence[Claimed] = ()  # `settle` said HANDOFF: queued, unleased, to settle_handed


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    source: str | None
    idempotency_key: str | None
    priority: int
    state: str
    payload: dict[str, Any]
    metadata: dict[str, Any] | None
    attempts: int
    deaths: int
    lease_expiries: int
    next_attempt_at: float
    last_error: ErrorInfo | None
    dead_reason: str | None
    content_hash: str | None
    duplicate_of: str | None
    trace_context: str | None
    created_at: float
    updated_at: float
    done_at: float | None
    timings: dict[str, float] | None = None


@dataclass(frozen=True)
class AttemptRecord:
    attempt: int
    at: float
    outcome: str
    stage: str | None
    error_class: str | None
    message: str | None
    host: str | None


@dataclass(frozen=True)
class DLQFilter:
    """Which dead items an operation applies to; empty fields match everything."""

    ids: tuple[str, ...] = ()
    stage: str | None = None
    error_class: str | None = None
    host: str | None = None
    kind: str | None = None
    source: str | None = None
    reason: str | None = None
    dead_before: float | None = None
    dead_after: float | None = None


@dataclass(frozen=True)
class DLQGroup:
    """Dead items sharing an error fingerprint (stage, error class, host)."""

    stage: str | None
    error_class: str | None
    host: str | None
    count: int
    oldest: float
    newest: float
    sample_ids: list[str] = field(default_factory=list)
    sample_message: str | None = None


# A hard bound on memory samples whatever the settings, on both backends: a week of one-minute
# samples of a dozen processes is ~120,000 rows of ~40 bytes.
MAX_RSS_ROWS = 200_000


@dataclass(frozen=True)
class RssSample:
    at: float
    service: str
    pid: int
    rss_bytes: int


@dataclass(frozen=True)
class PlanStep:
    detail: str  # the backend's plan text, e.g. SQLite's "SCAN items" or "SEARCH items USING INDEX ..."
    full_scan: bool  # every row of a table read (directly, or walking an index over all of them)


@dataclass
class StoreStats:
    """What one exporter scrape reads from the store, in one read transaction (a snapshot).

    Every figure is a maintained counter or an index seek, so the read costs the same at any size.
    `kv` holds only BACKUP_KEY and MAINTENANCE_KEY; `heartbeats` the raw engine heartbeat values.
    `db_bytes` / `wal_bytes` are None where the backend has no such file.
    """

    items: list[tuple[str, str, int]] = field(default_factory=list)  # (state, kind, n)
    dlq: list[tuple[str, str, int]] = field(default_factory=list)  # (stage, error class, n), biggest first
    oldest_queued_at: float | None = None
    completed: int = 0
    contents: int = 0
    content_bytes: int = 0
    kv: dict[str, str] = field(default_factory=dict)
    feeds: dict[str, int] = field(default_factory=dict)  # active | failing -> n
    heartbeats: list[str] = field(default_factory=list)
    db_bytes: float | None = None
    wal_bytes: float | None = None
