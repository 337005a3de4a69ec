"""Pipelines for engine tests: the real stages wrapped with injected faults.

Workers import these by path ("tests.helpers.pipelines:name"), so they run in real worker
processes. Knobs come from environment variables (inherited by workers), not ATLAS_* settings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from atlas.errors import PermanentStageError, StageError
from atlas.pipeline import default_pipeline, web_pipeline
from atlas.pipeline.base import ItemContext, Pipeline, Stage
from atlas.settings import Settings


class _Record:
    """Append the item id to a file each time processing finishes (counts re-processing)."""

    name: str = "record"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        path = os.environ.get("TEST_PROCESSED_LOG")
        if path:
            with Path(path).open("a") as f:
                f.write(ctx.id + "\n")


class _Sleep:
    name: str = "sleep"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        started = os.environ.get("TEST_STARTED_LOG")
        if started:
            with Path(started).open("a") as f:
                f.write(f"{ctx.id} {os.getpid()}\n")
        await asyncio.sleep(float(os.environ.get("TEST_STAGE_SLEEP_SECONDS", "0.02")))


class _Poison:
    """Kill the worker process on any document containing POISON."""

    name: str = "poison"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        if "POISON" in (ctx.text or ""):
            os.kill(os.getpid(), signal.SIGKILL)


class _Hang:
    """Block the worker's whole event loop on any document containing HANG."""

    name: str = "hang"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        if "HANG" in (ctx.text or ""):
            time.sleep(3600)  # a CPU-bound or stuck library call: no await, no progress


class _Flaky:
    """FAILn fails its first n attempts (retryable); FATAL fails permanently."""

    name: str = "flaky"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        text = ctx.text or ""
        if "FATAL" in text:
            raise PermanentStageError("this document can never be processed", stage=self.name)
        for n in range(1, 10):
            if f"FAIL{n}" in text and ctx.attempt <= n:
                raise StageError(f"transient failure {ctx.attempt}/{n}", stage=self.name, host="origin.test")


def _with(*extra: Stage) -> Pipeline:
    base = default_pipeline().stages
    return Pipeline(stages=(base[0], *extra, *base[1:], _Record()))


def slow() -> Pipeline:
    return _with(_Sleep())


def poison() -> Pipeline:
    return _with(_Poison())


def hang() -> Pipeline:
    return _with(_Hang())


def flaky() -> Pipeline:
    return _with(_Flaky())


def web(settings: Settings) -> Pipeline:
    """The default pipeline with *.test hosts resolved to the local origin (tests.helpers.origin)."""
    from tests.helpers.origin import origin_resolver

    return web_pipeline(settings, resolver=origin_resolver)


def broken_build(settings: Settings) -> Pipeline:
    """The real pipeline's factory failing as one with a bug does: at build, in every process."""
    web_pipeline(settings)
    raise RuntimeError("the test pipeline refuses to build")


def crash_after_start(settings: Settings) -> Pipeline:
    """The real web pipeline, whose per-host probe (run only in workers, about once a second
    after they report ready) exits the worker: a worker that starts, then keeps dying idle."""
    real = web_pipeline(settings)

    def probe() -> dict[str, Any]:
        os._exit(3)

    return Pipeline(stages=real.stages, probe=probe)


class _RawAsText:
    """The fetched body as the item's text, unextracted (Normalise then hashes it and builds the
    result): a page stored without extraction's CPU."""

    name: str = "raw_as_text"
    kinds: tuple[str, ...] = ("url",)

    async def run(self, ctx: ItemContext) -> None:
        if ctx.result is None:  # None: not a 304 answered from what was stored before
            ctx.text = ctx.extra["fetched"].body.decode("utf-8", "replace")


def fetch_only(settings: Settings) -> Pipeline:
    """The real guarded fetch of URL items from the local origin (*.test hosts), stored without
    extraction: I/O-bound work for bench/scale.py, where extraction's CPU would measure the CPUs
    (2, shared) rather than the engine processes."""
    from atlas.pipeline import build_fetcher
    from atlas.pipeline.document import Normalise
    from atlas.pipeline.fetch import Fetch
    from tests.helpers.origin import origin_resolver

    fetch = Fetch(build_fetcher(settings, resolver=origin_resolver))
    return Pipeline(stages=(fetch, _RawAsText(), Normalise()))


# Libraries only the web stages use (and what they pull in): a worker that has only run documents
# should hold none of them (issue 18, worker RSS).
WEB_LIBRARIES = (
    "httpx",
    "httpcore",
    "h11",
    "lxml",
    "trafilatura",
    "justext",
    "feedparser",
    "charset_normalizer",
)


class _ReportWebModules:
    """Put the web libraries loaded in this worker process into the document's title, so the test
    reads them back from the stored result: what the child had in sys.modules after the real
    stages ran, reported through the real pipe and store."""

    name: str = "report_modules"
    kinds: tuple[str, ...] = ("document",)

    async def run(self, ctx: ItemContext) -> None:
        import sys

        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(WEB_LIBRARIES))
        ctx.title = "loaded:" + ",".join(loaded)


def documents_reporting_modules(settings: Settings) -> Pipeline:
    """The default pipeline as `atlas core` builds it, reporting which web libraries its worker loaded."""
    base = default_pipeline(settings).stages
    return Pipeline(stages=(*base[:-1], _ReportWebModules(), base[-1]))
