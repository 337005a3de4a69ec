"""The API's group commit in a child process (atlas.api.commitproc), on both backends: a real
child opening the real store from the settings."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from atlas.api.commitproc import BIG_REQUEST_ITEMS, CommitProcess, SplitCommitter
from atlas.api.groupcommit import GroupCommitter, Overloaded
from atlas.errors import StoreError
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.models import NewItem
from atlas.store.protocols import AtlasStore
from tests.helpers.stores import sql_rows

pytestmark = pytest.mark.both_backends
T = TypeVar("T")


@pytest.fixture
def store(settings: Settings) -> Iterator[AtlasStore]:
    s = open_store(settings, migrate=True)
    yield s
    s.close()


@pytest.fixture
def committer(settings: Settings, store: AtlasStore) -> Iterator[CommitProcess]:
    c = CommitProcess(settings, store, max_pending_rows=10_000)
    c.start()
    yield c
    c.stop()


def doc(text: str, key: str | None = None) -> NewItem:
    digest = f"hash of {text}" if key else None
    return NewItem(kind="document", payload={"content": text}, idempotency_key=key, request_hash=digest)


async def until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())  # type: ignore[arg-type]


def test_concurrent_requests_are_committed_once_each(committer: CommitProcess, store: AtlasStore) -> None:
    timings = getattr(store, "query_timings", {})
    before = set(timings)

    async def body() -> list[Any]:
        return await asyncio.gather(
            *(committer.submit([doc(f"text {i}-{j}") for j in range(1 + i % 3)]) for i in range(60))
        )

    answers = run(body)
    ids = [r.id for answer in answers for r in answer]
    assert [len(a) for a in answers] == [1 + i % 3 for i in range(60)]
    assert all(r.created for answer in answers for r in answer)
    rows = sql_rows(store, "SELECT id, state FROM items")
    assert sorted(ids) == sorted(r[0] for r in rows) and len(set(ids)) == len(ids) == 120
    assert {r[1] for r in rows} == {"queued"}
    assert committer.rows == 120 and 1 <= committer.commits <= 60 and committer.pending_rows == 0
    # The child's query timings reach the API's store, which /metrics exports.
    assert set(timings) - before, sorted(timings)


def test_idempotency_keys_across_and_within_requests(committer: CommitProcess) -> None:
    async def body() -> tuple[Any, Any]:
        first = await committer.submit([doc("a", "k1"), doc("a", "k1"), doc("b")])
        second = await committer.submit([doc("a", "k1")])
        return first, second

    first, second = run(body)
    assert first[0].created and not first[1].created and first[0].id == first[1].id
    assert first[2].created
    assert not second[0].created and second[0].id == first[0].id
    assert second[0].request_hash == first[0].request_hash == "hash of a"


def test_a_killed_child_fails_what_waits_and_the_next_request_starts_another(
    settings: Settings, committer: CommitProcess, store: AtlasStore
) -> None:
    first_pid = committer.pid
    assert first_pid is not None

    async def body() -> Any:
        await committer.submit([doc("before")])
        os.kill(first_pid, signal.SIGKILL)
        await until(lambda: committer.pid is None, "the parent to notice the child's death")
        return await committer.submit([doc("after")])

    (after,) = run(body)
    assert after.created and committer.starts == 2 and committer.pid not in (None, first_pid)
    assert sorted(r[0] for r in sql_rows(store, "SELECT id FROM items"))[-1] == after.id
    assert len(sql_rows(store, "SELECT id FROM items")) == 2


def test_a_request_waiting_on_a_child_that_dies_gets_store_error(
    settings: Settings, committer: CommitProcess, store: AtlasStore
) -> None:
    """The child is stopped (SIGSTOP) so that a request waits on it; killed then, the request
    fails with StoreError (503 for its client) instead of waiting for ever."""
    pid = committer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)

    async def body() -> BaseException | None:
        waiting = asyncio.ensure_future(committer.submit([doc("lost")]))
        await until(lambda: committer.pending_rows == 1, "the request to be sent")
        os.kill(pid, signal.SIGKILL)
        try:
            await waiting
        except StoreError as exc:
            return exc
        return None

    error = run(body)
    assert isinstance(error, StoreError) and "exited" in str(error)
    assert committer.pending_rows == 0
    assert sql_rows(store, "SELECT id FROM items") == []


def test_overload_is_refused_before_anything_is_sent(settings: Settings, store: AtlasStore) -> None:
    committer = CommitProcess(settings, store, max_pending_rows=2)
    committer.start()
    pid = committer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # nothing is answered meanwhile
    try:

        async def body() -> None:
            first = asyncio.ensure_future(committer.submit([doc("one"), doc("two")]))
            await until(lambda: committer.pending_rows == 2, "the first request to be sent")
            with pytest.raises(Overloaded):
                await committer.submit([doc("three")])
            os.kill(pid, signal.SIGCONT)
            assert len(await first) == 2

        run(body)
    finally:
        os.kill(pid, signal.SIGCONT)
        committer.stop()
    assert len(sql_rows(store, "SELECT id FROM items")) == 2


def test_the_child_ignores_sigterm_and_stop_commits_what_was_sent(
    settings: Settings, committer: CommitProcess, store: AtlasStore
) -> None:
    """systemd and a terminal signal the whole process group: the child must outlive SIGTERM and
    SIGINT and end when the API closes its stdin, after committing what it was sent."""
    pid = committer.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)

    async def body() -> None:
        (result,) = await committer.submit([doc("still here")])
        assert result.created

    run(body)
    assert committer.pid == pid and committer.starts == 1
    # Sent but not yet answered when stop() is called: stop waits for the child, which commits it.
    os.kill(pid, signal.SIGSTOP)
    loop = asyncio.new_event_loop()
    try:
        pending = loop.create_task(committer.submit([doc("sent before stop")]))
        loop.run_until_complete(until(lambda: committer.pending_rows == 1, "the request to be sent"))
        threading.Timer(0.2, os.kill, (pid, signal.SIGCONT)).start()
        committer.stop()
        loop.run_until_complete(asyncio.wait([pending]))
        assert isinstance(pending.exception(), StoreError)  # never answered...
    finally:
        loop.close()
    assert len(sql_rows(store, "SELECT id FROM items")) == 2  # ...but committed


def test_start_fails_loudly_when_the_child_cannot_open_the_store(tmp_path: Path) -> None:
    """Whatever open_store raises in the child is the parent's StoreError (the backend does not
    matter here, and PostgreSQL's pool waits 30 s for a server that is not there)."""
    good = Settings(data_dir=tmp_path / "good", db_synchronous="NORMAL")
    store = open_store(good, migrate=True)
    try:
        committer = CommitProcess(good.replace(data_dir=tmp_path / "missing"), store, max_pending_rows=10)
        with pytest.raises(StoreError, match="could not open the store: DatabaseNotReady: no database at"):
            committer.start()
        assert committer.pid is None
    finally:
        store.close()


def test_small_requests_go_to_the_process_and_big_batches_to_the_thread(
    settings: Settings, store: AtlasStore
) -> None:
    small = CommitProcess(settings, store, max_pending_rows=10_000)
    big = GroupCommitter(store, max_pending_rows=10_000)
    split = SplitCommitter(small, big, max_pending_rows=BIG_REQUEST_ITEMS + 5)
    split.start()
    try:

        async def body() -> tuple[Any, Any]:
            return await asyncio.gather(
                split.submit([doc(f"single {i}") for i in range(3)]),
                split.submit([doc(f"batch {i}") for i in range(BIG_REQUEST_ITEMS + 1)]),
            )

        few, many = run(body)
        assert (small.rows, big.rows) == (3, BIG_REQUEST_ITEMS + 1)
        assert split.rows == BIG_REQUEST_ITEMS + 4 and split.commits == small.commits + big.commits
        assert all(r.created for r in few + many)
        ids = {r[0] for r in sql_rows(store, "SELECT id FROM items")}
        assert ids == {r.id for r in few + many}

        async def over() -> None:  # the budget is shared: the thread's waiting rows count
            pid = small.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                first = asyncio.ensure_future(split.submit([doc("held")] * 5))
                await until(lambda: split.pending_rows == 5, "the held request")
                with pytest.raises(Overloaded):
                    await split.submit([doc(f"too many {i}") for i in range(BIG_REQUEST_ITEMS + 1)])
            finally:
                os.kill(pid, signal.SIGCONT)
            assert len(await first) == 5

        run(over)
    finally:
        split.stop()


def test_a_child_started_by_a_request_says_ready_among_its_answers(
    settings: Settings, store: AtlasStore
) -> None:
    """A child started by a request (after the first died) answers "ready" first, then its
    commits, possibly in one read: each answer is taken, none lost (this once hung a request)."""
    committer = CommitProcess(settings, store, max_pending_rows=10)
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        committer._waiting[7] = (
            future,
            [("id-7", "document", None, None, 0, "{}", None, 0.0, None, "h", 0.0)],
        )
        committer._pending_rows = 1
        committer._answer(("ready",))
        committer._answer(("ok", [(7, None)], 1, [], 0))
        assert future.result()[0].id == "id-7" and committer.pending_rows == 0
    finally:
        loop.close()
