"""A real uvicorn server on 127.0.0.1 serving the app, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from atlas.api.app import create_app
from atlas.api.keys import create_key
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.sqlite import SQLiteStore
from tests.helpers.engine import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Api:
    url: str
    store: Any  # SQLiteStore, or PostgresStore under ATLAS_TEST_SETTINGS_BACKEND=postgres
    settings: Settings
    keys: dict[str, str]  # scope -> bearer key

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


@contextmanager
def running_api(
    settings: Settings,
    *,
    store_class: type[SQLiteStore] = SQLiteStore,
    tracer_provider: TracerProvider | None = None,
) -> Iterator[Api]:
    """`store_class`: the real store or a subclass wrapping a method to inject a fault or a delay;
    `tracer_provider`: handed to create_app (never set globally, which would change later apps)."""
    store: Any = (
        open_store(settings, migrate=True)
        if settings.database_backend == "postgresql"
        else store_class(settings.sqlite_path, synchronous=settings.db_synchronous)
    )
    keys = {
        scope: str(create_key(store, settings.api_key_pepper, f"test-{scope}", [scope])["key"])
        for scope in ("ingest", "read", "admin")
    }
    with serve(create_app(settings, store, tracer_provider=tracer_provider)) as url:
        yield Api(url, store, settings, keys)
    store.close()
