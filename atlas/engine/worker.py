"""The worker process: runs pipeline stages on items the supervisor sends, reports each result.

Workers hold no database connection and no leases: only the supervisor commits, so whatever a
worker does after the supervisor is gone can never complete an item twice. A worker exits when its
pipe to the supervisor closes; on Linux it is also killed with its parent (PR_SET_PDEATHSIG).

The messages both ways are in atlas.engine.messages. Jobs start in the order sent, at most
`concurrency` at a time: the supervisor relies on this to know which items a dead worker may have
been running.

`deadline` (Unix time) is when the supervisor's leases might lapse: it moves on with every
heartbeat that reached the database. A worker still holding jobs past it exits at once
(LEASE_LAPSED_EXIT): a hung or stopped supervisor must not leave a worker running an item that
another engine may already have claimed, so no item ever has two live workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from atlas.engine.handoff import settle_plain
from atlas.engine.messages import (
    Deferral,
    Done,
    Extend,
    Failed,
    FromWorker,
    Hosts,
    Job,
    Outcome,
    Ready,
    Run,
    Settle,
    Settled,
    Stop,
    ToWorker,
)
from atlas.engine.pool import LEASE_LAPSED_EXIT  # EX_TEMPFAIL: not the items' fault
from atlas.errors import Deferred, PermanentStageError, StageError
from atlas.logging import configure_logging, get_logger
from atlas.observability.tracing import may_record, setup_tracing
from atlas.pipeline.base import ItemContext, Pipeline
from atlas.settings import Settings
from atlas.store.models import ErrorInfo

_PROPAGATOR = TraceContextTextMapPropagator()
WATCHDOG_SECONDS = 0.2
PROBE_SECONDS = 1.0
log = get_logger("atlas.worker")


def resolve(path: str) -> Callable[[], Pipeline]:
    """Import 'package.module:function'."""
    module, _, name = path.partition(":")
    factory: Callable[[], Pipeline] = getattr(importlib.import_module(module), name)
    return factory


async def process(pipeline: Pipeline, job: Job, tracer: trace.Tracer) -> Outcome:
    """Run every stage for the job's kind; return the outcome message for the supervisor."""
    ctx = ItemContext(
        id=job.id,
        kind=job.kind,
        payload=job.payload,
        attempt=job.attempt,
        source=job.source,
        metadata=job.metadata,
    )
    if not may_record(tracer):
        # OpenTelemetry's no-op tracer: no span would be recorded, and making the item's cost
        # more than a small document's own processing (measured, issue 18). The request's trace
        # context is still made current, so logs carry its trace id as before.
        if not job.trace_context:
            return await _run_stages(pipeline, ctx, trace.INVALID_SPAN, None)
        token = otel_context.attach(_PROPAGATOR.extract({"traceparent": job.trace_context}))
        try:
            return await _run_stages(pipeline, ctx, trace.get_current_span(), None)
        finally:
            otel_context.detach(token)
    carrier = {"traceparent": job.trace_context} if job.trace_context else {}
    attributes: dict[str, str | int] = {
        "atlas.item.id": ctx.id,
        "atlas.item.kind": ctx.kind,
        "atlas.item.attempt": ctx.attempt,
    }
    parent = _PROPAGATOR.extract(carrier)
    with tracer.start_as_current_span("atlas.item", context=parent, attributes=attributes) as span:
        # Unrecorded (e.g. sampled out), a stage's span would only repeat the item span's ids.
        return await _run_stages(pipeline, ctx, span, tracer if span.is_recording() else None)


async def _run_stages(
    pipeline: Pipeline, ctx: ItemContext, span: trace.Span, tracer: trace.Tracer | None
) -> Outcome:
    """The stages of `ctx`'s kind under the item's `span`; each in a span of its own when a
    `tracer` is given (the item's span records)."""
    timings: dict[str, float] = {}
    for stage in pipeline.for_kind(ctx.kind):
        started = time.perf_counter()
        with (
            tracer.start_as_current_span(f"atlas.stage.{stage.name}")
            if tracer is not None
            else contextlib.nullcontext(span)
        ) as stage_span:
            try:
                await stage.run(ctx)
            except Deferred as exc:
                timings[stage.name] = time.perf_counter() - started
                reason = ErrorInfo(stage.name, "Deferred", str(exc)[:2000], exc.host or ctx.host)
                return Deferral(ctx.id, reason, exc.until, timings)
            except Exception as exc:  # every failure becomes a recorded attempt, never a crash
                timings[stage.name] = time.perf_counter() - started
                stage_span.record_exception(exc)
                stage_span.set_status(trace.StatusCode.ERROR, str(exc))
                span.set_status(trace.StatusCode.ERROR, str(exc))
                host = getattr(exc, "host", None) or ctx.host
                error = ErrorInfo(stage.name, type(exc).__name__, str(exc)[:2000], host)
                permanent = isinstance(exc, PermanentStageError)
                if not isinstance(exc, StageError):
                    log.warning(
                        "stage raised unexpectedly",
                        item_id=ctx.id,
                        stage=stage.name,
                        error_class=type(exc).__name__,
                        error=str(exc)[:500],
                    )
                return Failed(ctx.id, error, permanent, timings)
        timings[stage.name] = time.perf_counter() - started
    if ctx.result is None:
        error = ErrorInfo("pipeline", "NoResult", f"no stage produced a result for kind {ctx.kind!r}")
        return Failed(ctx.id, error, True, timings)
    return Done(ctx.id, ctx.result, timings)


def settle(message: Settle) -> Settled:
    """The stored results of a Settle's documents, and the ids of those that did not end stored."""
    stored, unsettled = [], []
    for item_id, payload in message.docs:
        plain = settle_plain(item_id, payload, message.tsvector)
        if plain is None:
            unsettled.append(item_id)
        else:
            stored.append(plain)
    return Settled(stored, unsettled)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def build_pipeline(path: str, settings: Any = None) -> Pipeline:
    """Call the factory at `path`, with the engine's settings when it takes an argument."""
    factory: Callable[..., Pipeline] = resolve(path)
    if settings is not None and inspect.signature(factory).parameters:
        return factory(settings)
    return factory()


def worker_main(conn: Connection, pipeline_path: str, concurrency: int, settings: Settings) -> None:
    """Entry point of a worker process."""
    _die_with_parent()
    # The supervisor drains on SIGTERM and tells us when to stop; a terminal's ^C is its job too.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The worker logs what it fetches (libraries quote URLs): it redacts the same secrets as the
    # supervisor, which it gets with the settings, since it has no other way to know them.
    configure_logging(settings.log_level, process="atlas-worker", secrets=settings.secret_values())
    setup_tracing("atlas-core", record_unexported=False)
    pipeline = build_pipeline(pipeline_path, settings)
    asyncio.run(_serve(conn, pipeline, concurrency))


async def _serve(conn: Connection, pipeline: Pipeline, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[ToWorker] = asyncio.Queue()
    deadline = [float("inf")]  # written by the reader thread only
    held = [0, 0]  # jobs received (reader thread), results sent (loop thread)

    def read() -> None:
        # A thread reads so the pipe drains even while the loop is busy sending results: the two
        # directions can never both be full at once, so the supervisor and worker cannot deadlock.
        # It also takes deadline extensions at once, even while the loop waits for a free slot.
        try:
            while True:
                message: ToWorker = conn.recv()
                if isinstance(message, Run | Extend):
                    deadline[0] = message.deadline
                if isinstance(message, Run):
                    held[0] += len(message.jobs)
                if not isinstance(message, Extend):
                    loop.call_soon_threadsafe(inbox.put_nowait, message)
        except (EOFError, OSError):
            os._exit(0)  # the supervisor is gone: nothing finished here could be committed

    def watchdog() -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if held[0] > held[1] and time.time() > deadline[0]:
                log.error(
                    "leases may have lapsed; worker exits", deadline=deadline[0], holding=held[0] - held[1]
                )
                os._exit(LEASE_LAPSED_EXIT)

    threading.Thread(target=read, name="atlas-worker-reader", daemon=True).start()
    threading.Thread(target=watchdog, name="atlas-worker-watchdog", daemon=True).start()
    conn.send([Ready()])
    tracer = trace.get_tracer("atlas.engine")
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    outbox: list[FromWorker] = []

    def flush() -> None:
        # Results finished in the same turn of the loop travel in one message.
        if outbox:
            conn.send(outbox[:])
            held[1] += sum(1 for m in outbox if not isinstance(m, Ready | Hosts | Settled))
            outbox.clear()

    async def run_one(job: Job) -> None:
        try:
            message = await process(pipeline, job, tracer)
            if not outbox:
                loop.call_soon(flush)
            outbox.append(message)
        finally:
            slots.release()

    async def report() -> None:
        # The pipeline's per-host state, for the supervisor's metrics (atlas.engine.host_metrics).
        while pipeline.probe is not None:
            await asyncio.sleep(PROBE_SECONDS)
            if not outbox:
                loop.call_soon(flush)
            outbox.append(Hosts(pipeline.probe()))

    reporter = asyncio.create_task(report())
    while True:
        message = await inbox.get()
        if isinstance(message, Stop):
            break
        if isinstance(message, Settle):  # CPU only, a few milliseconds: done before anything else
            if not outbox:
                loop.call_soon(flush)
            outbox.append(settle(message))
            continue
        assert isinstance(message, Run)  # Extend never reaches the inbox
        for job in message.jobs:
            await slots.acquire()  # FIFO: jobs start in the order they were sent
            task = asyncio.create_task(run_one(job))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    reporter.cancel()
