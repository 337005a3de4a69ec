"""A real uvicorn server on 127.0.0.1 serving the app, in a thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from atlas.api.app import create_app
from atlas.api.keys import create_key
from atlas.settings import Settings
from atlas.store import AtlasStore, open_store
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port


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
    store: Any  # the store the app serves (as `wrap` returned it), on the settings' backend
    settings: Settings
    keys: dict[str, str]  # scope -> bearer key

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


@contextmanager
def running_api(
    settings: Settings,
    *,
    wrap: Callable[[AtlasStore], Any] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Iterator[Api]:
    """The app on a real server, its store opened for the settings' backend as `atlas api` opens it.

    `wrap`: given the real store, returns what the app gets instead (a wrapper through the store's
    protocols, to inject a fault or a delay on either backend); `tracer_provider`: handed to
    create_app (never set globally, which would change later apps)."""
    store = open_store(settings, migrate=True)
    served: Any = wrap(store) if wrap else store
    keys = {
        scope: str(create_key(store, settings.api_key_pepper, f"test-{scope}", [scope])["key"])
        for scope in ("ingest", "read", "admin")
    }
    try:
        with serve(create_app(settings, served, tracer_provider=tracer_provider)) as url:
            yield Api(url, served, settings, keys)
    finally:
        store.close()
