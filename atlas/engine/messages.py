"""What the supervisor and its worker processes say to each other over a pipe.

Supervisor → worker, one message at a time:
    Run(jobs, deadline)   start these jobs, in order, at most `concurrency` at a time
    Extend(deadline)      the leases are good until `deadline` (Unix time): go on working
    Stop()                finish what is running and exit
    Settle(docs)          store these cheap documents' results, at once (atlas.engine.handoff)
Worker → supervisor, a list of messages per turn of the worker's loop (fewer, larger sends):
    Ready()               once, when the pipeline is built: only then jobs come
    Done(item_id, result, timings)                the item's pipeline produced `result`
    Failed(item_id, error, permanent, timings)    a stage raised; `permanent`: no retry helps
    Deferral(item_id, error, until, timings)      a stage asked to wait until `until` (Unix time)
    Hosts(snapshot)       about once a second, when the pipeline has a probe: per-host state
    Settled(stored, unsettled)   a Settle's documents: the results of those stored, the others' ids

Jobs start in the order sent: the supervisor relies on this to know which items a dead worker
may have been running. NamedTuples, not dataclasses: thousands cross the pipe a second, and a
tuple pickles smaller and faster than an object with a __dict__.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from atlas.store.models import Claimed, ContentResult, ErrorInfo, SettledDocument


class Job(NamedTuple):
    """What a worker needs of a claimed item (kept small: it crosses a pipe)."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempt: int  # this attempt's number, from 1
    source: str | None = None
    metadata: dict[str, Any] | None = None
    trace_context: str | None = None  # the W3C traceparent of the request that created it

    @classmethod
    def of(cls, item: Claimed) -> Job:
        return cls(
            item.id,
            item.kind,
            item.payload,
            item.attempts + 1,
            item.source,
            item.metadata,
            item.trace_context,
        )


class Run(NamedTuple):
    jobs: list[Job]
    deadline: float


class Extend(NamedTuple):
    deadline: float


class Stop(NamedTuple):
    pass


class Settle(NamedTuple):
    docs: list[tuple[str, dict[str, Any]]]  # (item id, payload): queued items, never leased
    tsvector: bool = False  # with each one's search index tsvector (the store's handed_tsvector)


ToWorker = Run | Extend | Stop | Settle


class Ready(NamedTuple):
    pass


class Done(NamedTuple):
    item_id: str
    result: ContentResult
    timings: dict[str, float]  # seconds per stage name


class Failed(NamedTuple):
    item_id: str
    error: ErrorInfo
    permanent: bool
    timings: dict[str, float]


class Deferral(NamedTuple):
    item_id: str
    error: ErrorInfo
    until: float
    timings: dict[str, float]


class Hosts(NamedTuple):
    snapshot: dict[str, Any]


class Settled(NamedTuple):
    stored: list[SettledDocument]
    unsettled: list[str]  # ids of those that did not end stored (the engine settles them itself)


Outcome = Done | Failed | Deferral  # one per job
FromWorker = Ready | Outcome | Hosts | Settled
