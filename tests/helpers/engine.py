"""Running a real engine (in a thread or as an `atlas core` process) and waiting on conditions."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry

from atlas.engine.supervisor import Engine
from atlas.settings import Settings
from atlas.store.models import FINAL_STATES
from atlas.store.sqlite import SQLiteStore


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout` seconds (a bound, not a goal)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def finished(store: SQLiteStore) -> int:
    return sum(n for (state, _), n in store.counts().items() if state in FINAL_STATES)


@contextmanager
def engine_thread(settings: Settings, store: SQLiteStore, pipeline: str) -> Iterator[Engine]:
    engine = Engine(settings, store, pipeline=pipeline, registry=CollectorRegistry())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="engine-under-test")
    thread.start()
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "engine did not stop"
        assert not errors, errors


def start_core(env: dict[str, str], pipeline: str, log: Path) -> subprocess.Popen[bytes]:
    """`atlas core` as its own process, logging to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "atlas", "core", "--pipeline", pipeline], env=env, stdout=out, stderr=out
        )
