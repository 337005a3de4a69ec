"""Group commit: concurrent ingest requests share one transaction, and one fsync.

Requests hand their items to a writer thread and wait. The writer takes everything waiting (up to
MAX_ROWS), enqueues it in one transaction, and answers each request once that transaction has
committed. No timer is needed: while one commit runs, the next batch gathers by itself, so a lone
request is committed at once and a crowd shares the cost of each fsync.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.store.models import EnqueueResult, NewItem, PreparedItems
from atlas.store.protocols import AtlasStore

MAX_ROWS = 4000
log = get_logger("atlas.api.commit")


@dataclass
class _Request:
    prepared: PreparedItems
    future: asyncio.Future[list[EnqueueResult]]
    loop: asyncio.AbstractEventLoop


class Overloaded(StoreError):
    """Too many items are waiting for the group commit."""


class Committer(Protocol):
    """What the routes and the app's lifespan use of a group commit: GroupCommitter (a thread),
    atlas.api.commitproc.CommitProcess (a child process), or its SplitCommitter of the two (what
    `atlas api` runs)."""

    @property
    def commits(self) -> int: ...

    @property
    def rows(self) -> int: ...

    @property
    def pending_rows(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def submit(self, items: Sequence[NewItem]) -> list[EnqueueResult]: ...


class GroupCommitter:
    def __init__(self, store: AtlasStore, max_pending_rows: int, rows_histogram: Any = None) -> None:
        """`rows_histogram`: atlas_api_commit_batch_rows from the catalog, observed per commit."""
        self.store = store
        self.max_pending_rows = max_pending_rows
        self.rows_histogram = rows_histogram
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="atlas-group-commit", daemon=True)
        self.commits = 0
        self.rows = 0

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    async def submit(self, items: Sequence[NewItem]) -> list[EnqueueResult]:
        """Enqueue `items` durably; returns once they are committed. Raises Overloaded or StoreError."""
        with self._lock:
            if self._pending_rows + len(items) > self.max_pending_rows:
                raise Overloaded(f"{self._pending_rows} items are already waiting to be committed")
            self._pending_rows += len(items)
        try:
            # Ids and JSON here, on the request's thread: the writer thread serves every request
            # in turn, so whatever it need not do is throughput (issue 18).
            prepared = self.store.prepare(items)
        except BaseException:
            with self._lock:
                self._pending_rows -= len(items)
            raise
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[EnqueueResult]] = loop.create_future()
        self._queue.put(_Request(prepared, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, rows = [first], len(first.prepared.items)
            while rows < MAX_ROWS:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
                rows += len(nxt.prepared.items)
            self._commit(batch, rows)

    def _commit(self, batch: list[_Request], rows: int) -> None:
        try:
            results = self.store.enqueue(PreparedItems.join([request.prepared for request in batch]))
        except Exception as exc:
            self._release(rows)
            # StoreError is the expected failure (503); anything else is a bug, answered 500 by
            # the request it reaches, but it must not stop the writer and with it all ingest.
            log.error(
                "group commit failed",
                error=str(exc),
                error_class=type(exc).__name__,
                requests=len(batch),
                rows=rows,
            )
            for request in batch:
                request.loop.call_soon_threadsafe(_fail, request.future, exc)
        else:
            # Out of the budget before any request hears of it: a request sent after an answered
            # one was refused as overloaded on these committed rows (seen under load in a test).
            self._release(rows)
            self.commits += 1
            self.rows += rows
            if self.rows_histogram is not None:
                self.rows_histogram.observe(rows)
            # One wake-up per event loop for the whole batch, not one per request.
            answers: dict[asyncio.AbstractEventLoop, list[tuple[_Request, list[EnqueueResult]]]] = {}
            start = 0
            for request in batch:
                n = len(request.prepared.items)
                answers.setdefault(request.loop, []).append((request, results[start : start + n]))
                start += n
            for loop, pairs in answers.items():
                loop.call_soon_threadsafe(_resolve_all, pairs)

    def _release(self, rows: int) -> None:
        with self._lock:
            self._pending_rows -= rows


def _resolve_all(pairs: list[tuple[_Request, list[EnqueueResult]]]) -> None:
    for request, value in pairs:
        if not request.future.done():  # the client may have gone; the items are committed all the same
            request.future.set_result(value)


def _fail(future: asyncio.Future[list[EnqueueResult]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
