"""Group commit in a child process, under its own GIL (issue 18).

GroupCommitter's writer thread shares the API process's GIL with the event loop. Under load the
loop releases the GIL at every socket call and takes it straight back, so the writer, woken by
the first request of a round, never sees its switch interval run out: it got the GIL only when
the loop had nothing left to do. Every waiting request then went into one commit and the loop sat
idle through that commit's fsync (measured with wrk's 32 connections: commits of 29-32 rows,
each taken 17-20 ms after its first request arrived; the loop idle 11-17% of the time).

Here the commit runs in a child process that takes the next batch the moment a commit ends, while
the loop answers and parses: commits overlap request handling. The loop pays a pickle a request
and one pipe write a commit (frames wait while the child commits), and reads answers as they come
(add_reader), never blocking on the child. Requests of more than BIG_REQUEST_ITEMS items commit in
the API process's thread instead (SplitCommitter).

Frames on both pipes: a 4-byte little-endian length, then a pickle (the child trusts only its
parent and the parent only its child). Parent -> child: the Settings, then per request
(request id, [(idempotency key, request hash)] or None when no item has a key, rows). Child ->
parent: ("ready",) or ("failed", message) once, then per commit ("ok", [(request id, [(item id,
created, request hash)] or None: no keys, every row created as built)], rows, [(query name,
seconds)], locked errors) or ("error", [request ids], message, locked errors).

The child ignores SIGTERM and SIGINT (systemd and a terminal signal the whole group): it stops
when its stdin closes, after the commit under way, so a graceful shutdown's requests in flight are
still committed. If it dies, the requests waiting on it get 503 and the next request starts
another.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from atlas.api.groupcommit import Committer, Overloaded
from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.settings import Settings
from atlas.store.itemrows import ROW_ID, ROW_REQUEST_HASH
from atlas.store.models import EnqueueResult, NewItem, PreparedItems
from atlas.store.protocols import AtlasStore

log = get_logger("atlas.api.commit")
_HEADER = struct.Struct("<I")
_READ = 1 << 20
_IOV_MAX = 1024  # Linux's limit of buffers a writev
START_SECONDS = 60.0  # how long `start` waits for the child to open the store


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _Frames:
    """Whole frames out of the bytes read so far."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Any]:
        self.buffer += chunk
        out, start, buffer = [], 0, self.buffer
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            out.append(pickle.loads(buffer[start + _HEADER.size : end]))
            start = end
        del buffer[:start]
        return out


class CommitProcess:
    """GroupCommitter's interface (start, stop, submit, pending_rows, commits, rows), committing in
    a child process. Use it from one event loop (`atlas api`'s)."""

    def __init__(
        self, settings: Settings, store: AtlasStore, max_pending_rows: int, rows_histogram: Any = None
    ) -> None:
        """`store`: the API's own, which prepares rows and receives the child's query timings."""
        self.settings, self.store = settings, store
        self.max_pending_rows = max_pending_rows
        self.rows_histogram = rows_histogram
        self.commits = 0
        self.rows = 0
        self.locked_errors = 0  # the child's store's, as of its last answer
        self.starts = 0
        self._pending_rows = 0
        # request id -> (its future, its rows)
        self._waiting: dict[int, tuple[asyncio.Future[list[EnqueueResult]], Sequence[tuple[Any, ...]]]] = {}
        self._ids = itertools.count()
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames = _Frames()
        self._out: list[memoryview] = []  # frames not yet written, in order
        self._flushing = False  # a _flush is scheduled
        self._queued = 0  # frames in _out not yet counted in _unanswered
        self._unanswered = 0  # requests written (or being written) to the child, not answered yet
        self._writing = False  # _flush waits for the pipe (add_writer)
        self._stopping = False
        timings = getattr(store, "query_timings", None)
        self._timings: Callable[[str], Callable[[float], None]] | None = (
            timings.__getitem__ if timings is not None else None
        )

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- the child's life --------------------------------------------------------------------

    def start(self) -> None:
        """Start the child and wait until it has opened the store; StoreError if it cannot."""
        self._stopping = False
        proc = self._spawn()
        deadline = time.monotonic() + START_SECONDS
        assert proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout.fileno()], [], [], max(left, 0))
            if not ready:
                self._kill()
                raise StoreError(f"the commit process did not open the store in {START_SECONDS:.0f} s")
            try:
                chunk = os.read(proc.stdout.fileno(), _READ)
            except BlockingIOError:
                continue
            if not chunk:
                code = proc.wait()
                self._proc = None
                raise StoreError(f"the commit process exited with code {code} before it was ready")
            answers = self._frames.feed(chunk)
            if answers:
                break
        first, rest = answers[0], answers[1:]
        if first[0] != "ready":
            self._kill()
            raise StoreError(f"the commit process could not open the store: {first[1]}")
        assert not rest, "the child answers nothing before it is asked"

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atlas.api.commitproc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert proc.stdin is not None
        self._proc, self._frames, self._out = proc, _Frames(), []
        self._queued = self._unanswered = 0
        self._writing = False
        self.starts += 1
        assert proc.stdout is not None
        os.write(proc.stdin.fileno(), _frame(self.settings))  # a pipe takes 64 KiB: never blocks here
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)  # read when the loop says it is readable
        return proc

    def stop(self) -> None:
        """Close the child's stdin and wait for it: it ends after the commit under way."""
        self._stopping = True
        self._detach()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if self._out:  # what the loop could not write yet: the child is still reading
                os.set_blocking(proc.stdin.fileno(), True)
                os.write(proc.stdin.fileno(), b"".join(self._out))
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.error("the commit process did not stop in 30 s; killing it", pid=proc.pid)
            proc.kill()
            proc.wait()
        proc.stdout.close()
        self._fail_all(StoreError("the API is stopping"))

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def _died(self) -> None:
        """The child's stdout closed: fail what waits on it; the next request starts another."""
        self._detach()
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            code = proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        waiting = len(self._waiting)
        log.error("the commit process exited", code=code, requests_waiting=waiting)
        self._fail_all(StoreError(f"the commit process exited with code {code}; nothing was answered"))

    def _fail_all(self, exc: StoreError) -> None:
        waiting, self._waiting = self._waiting, {}
        self._pending_rows = 0
        for future, _ in waiting.values():
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(exc)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None:
            if self._stopping:
                raise StoreError("the API is stopping")
            proc = self._spawn()  # it reads the settings and opens the store while requests queue
        if self._loop is not loop:
            self._detach()
            assert proc.stdout is not None
            loop.add_reader(proc.stdout.fileno(), self._readable)
            self._loop, self._flushing = loop, False
        return proc

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        for fd in self._fds():
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        self._writing = False

    def _fds(self) -> list[int]:
        proc = self._proc
        if proc is None:
            return []
        return [p.fileno() for p in (proc.stdin, proc.stdout) if p is not None and not p.closed]

    # -- requests ----------------------------------------------------------------------------

    async def submit(self, items: Sequence[NewItem]) -> list[EnqueueResult]:
        """Enqueue `items` durably; returns once they are committed. Raises Overloaded or StoreError."""
        count = len(items)
        if self._pending_rows + count > self.max_pending_rows:
            raise Overloaded(f"{self._pending_rows} items are already waiting to be committed")
        prepared = self.store.prepare(items)
        loop = asyncio.get_running_loop()
        proc = self._attach(loop)
        future: asyncio.Future[list[EnqueueResult]] = loop.create_future()
        request = next(self._ids)
        # Without idempotency keys (the common request) every row is created as built: neither the
        # keys nor the answers need to cross (a 1,000-item batch would pickle them both ways).
        keys = None
        if any(item.idempotency_key is not None for item in prepared.items):
            keys = [(item.idempotency_key, item.request_hash) for item in prepared.items]
        self._waiting[request] = (future, prepared.rows)
        self._pending_rows += count
        self._send(proc, loop, _frame((request, keys, prepared.rows)))
        return await future

    def _send(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, frame: bytes) -> None:
        """Queue `frame`. While the child commits, what it was sent, frames wait here and go in one
        writev once its answer comes (_readable): it reads only between commits anyway, and a write
        a request cost the loop a system call and the child a wake-up each. With nothing sent
        unanswered, the frames of this turn of the loop go at its end (_flush, called soon)."""
        self._out.append(memoryview(frame))
        self._queued += 1
        if not self._unanswered and not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is queued; what the pipe does not take waits for it to drain (add_writer)."""
        self._flushing = False
        proc, out = self._proc, self._out
        if proc is None or proc.stdin is None or not out:
            return
        self._unanswered += self._queued  # all of it is on its way now
        self._queued = 0
        try:
            written = os.writev(proc.stdin.fileno(), out[:_IOV_MAX])
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the child is gone; its stdout's EOF fails what waits
            out.clear()
        while written:
            if written >= len(out[0]):
                written -= len(out.pop(0))
            else:
                out[0], written = out[0][written:], 0
        if self._loop is not None:
            if out and not self._writing:
                self._writing = True
                self._loop.add_writer(proc.stdin.fileno(), self._flush)
            elif not out and self._writing:
                self._writing = False
                self._loop.remove_writer(proc.stdin.fileno())

    def _readable(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            chunk = os.read(proc.stdout.fileno(), _READ)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._died()
            return
        for answer in self._frames.feed(chunk):
            self._answer(answer)
        if not self._unanswered and self._out and not self._writing:
            self._flush()  # the child is done with what it had: hand it what waited meanwhile

    def _answer(self, answer: tuple[Any, ...]) -> None:
        if answer[0] == "ready":  # a child started by a request (not by start) has opened the store
            return
        if answer[0] == "failed":  # ...or could not: it exits, and its EOF fails what waits on it
            log.error("the commit process could not open the store", error=answer[1])
            return
        if answer[0] == "ok":
            _, done, rows, timings, self.locked_errors = answer
            self.commits += 1
            self.rows += rows
            if self.rows_histogram is not None:
                self.rows_histogram.observe(rows)
            if self._timings is not None:
                for name, seconds in timings:
                    self._timings(name)(seconds)
            self._unanswered -= len(done)
            for request, results in done:
                future, rows = self._waiting.pop(request)
                self._pending_rows -= len(rows)
                if future.done():  # the client may have gone; the items are committed all the same
                    continue
                if results is None:  # no idempotency keys: every row created as built
                    results = [(r[ROW_ID], True, r[ROW_REQUEST_HASH]) for r in rows]
                future.set_result([EnqueueResult(*r) for r in results])
        else:
            _, requests, message, self.locked_errors = answer
            exc = StoreError(message)
            self._unanswered -= len(requests)
            for request in requests:
                future, rows = self._waiting.pop(request)
                self._pending_rows -= len(rows)
                if not future.done():
                    future.set_exception(exc)


BIG_REQUEST_ITEMS = 100


class SplitCommitter:
    """Requests of up to BIG_REQUEST_ITEMS items commit in the commit process, bigger ones in a
    GroupCommitter thread of the API process.

    A big batch crosses the pipe as a pickle both ways, and on 2 cores the pickling and the second
    process took CPU from the request parsing: 1,000-item batches ran at 27,400-31,200 items/s
    through the process against 31,100-36,000 through the thread (paired runs). Each such request
    is large enough that the thread's wait for the GIL is a small share of it. The two writers
    take turns on SQLite's write lock (BEGIN IMMEDIATE, busy timeout), as the engine does with
    the API; each request is committed whole by one of them.
    """

    def __init__(self, small: CommitProcess, big: Committer, max_pending_rows: int) -> None:
        self.small, self.big, self.max_pending_rows = small, big, max_pending_rows

    @property
    def pending_rows(self) -> int:
        return self.small.pending_rows + self.big.pending_rows

    @property
    def commits(self) -> int:
        return self.small.commits + self.big.commits

    @property
    def rows(self) -> int:
        return self.small.rows + self.big.rows

    @property
    def locked_errors(self) -> int:
        return self.small.locked_errors  # the thread's are the API store's own, counted there

    def start(self) -> None:
        self.big.start()
        self.small.start()

    def stop(self) -> None:
        self.small.stop()
        self.big.stop()

    async def submit(self, items: Sequence[NewItem]) -> list[EnqueueResult]:
        pending = self.pending_rows
        if pending + len(items) > self.max_pending_rows:
            raise Overloaded(f"{pending} items are already waiting to be committed")
        if len(items) > BIG_REQUEST_ITEMS:
            return await self.big.submit(items)
        return await self.small.submit(items)


# -- the child ---------------------------------------------------------------------------------


class _Keyed(NamedTuple):
    """What enqueue reads of an item besides its row (a tuple: made for every row of a batch)."""

    idempotency_key: str | None
    request_hash: str | None


def _read_frames(fd: int, frames: _Frames, block: bool) -> list[Any] | None:
    """The frames that have arrived (waiting for one when `block`); None once stdin has closed."""
    out: list[Any] = []
    while True:
        if not block and not select.select([fd], [], [], 0)[0]:
            return out
        chunk = os.read(fd, _READ)
        if not chunk:
            return out or None
        out += frames.feed(chunk)
        block = block and not out


def _locked(store: object) -> int:
    return int(getattr(store, "locked_errors", 0))


def child_main() -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the real stdout; anything printed by mistake goes to stderr.
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    reader = _Frames()
    first = _read_frames(0, reader, block=True)
    if not first:
        return 1
    settings: Settings = first[0]

    from atlas.logging import configure_logging
    from atlas.store import open_store

    configure_logging(settings.log_level, process="atlas-api-commit", secrets=settings.secret_values())
    try:
        store = open_store(settings, migrate=False)
    except Exception as exc:  # reported to the parent, which refuses to start
        os.write(answers_fd, _frame(("failed", f"{type(exc).__name__}: {exc}")))
        return 1
    timings: list[tuple[str, float]] = []
    recorded = getattr(store, "query_timings", None)
    if recorded is not None:
        recorded.record_to(timings)
    os.write(answers_fd, _frame(("ready",)))
    waiting: list[Any] = first[1:]
    while True:
        more = _read_frames(0, reader, block=not waiting)
        if more is None:
            break
        waiting += more
        if not waiting:
            continue
        batch, waiting = waiting, []
        keyed: list[Any] = [  # what enqueue reads of NewItem
            _Keyed(key, digest)
            for _, keys, rows in batch
            for key, digest in (keys or [(None, row[ROW_REQUEST_HASH]) for row in rows])
        ]
        prepared = PreparedItems(keyed, [row for _, _, rows in batch for row in rows])
        try:
            results = store.enqueue(prepared)
        except Exception as exc:
            if not isinstance(exc, StoreError):
                log.exception("group commit failed", requests=len(batch), rows=len(prepared.rows))
            message = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
            answer: tuple[Any, ...] = ("error", [request for request, _, _ in batch], message, _locked(store))
        else:
            done: list[tuple[int, Any]] = []
            start = 0
            for request, keys, rows in batch:
                if keys is None:  # created as built (the parent has the rows)
                    done.append((request, None))
                else:
                    mine = results[start : start + len(rows)]
                    done.append((request, [(r.id, r.created, r.request_hash) for r in mine]))
                start += len(rows)
            answer = ("ok", done, len(prepared.rows), timings[:], _locked(store))
        timings.clear()
        data = _frame(answer)
        view = memoryview(data)
        while view:
            view = view[os.write(answers_fd, view) :]
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
