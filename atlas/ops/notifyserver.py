"""A uvicorn server that speaks sd_notify: READY=1 once it serves, WATCHDOG=1 while its loop turns.

Shared by `atlas api` and `atlas alert-router`. Its own module (not sdnotify.py) because it imports
uvicorn, which `atlas core` and `atlas exporter` import sdnotify without needing (~20 MiB RSS).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

from atlas.ops.sdnotify import Liveness, Notifier, Watchdog, loop_alive


class NotifyingServer(uvicorn.Server):
    """startup() returns with the sockets bound and the app's lifespan done: requests are served
    from there on. on_tick() runs on the event loop every 0.1 s, so it stops when a handler blocks
    the loop, and with it the watchdog ping.

    `ready` says whether the rest of the process serves too (the router: its sender process has
    started); READY=1 waits for it, checked on each tick, so startup never blocks the loop."""

    def __init__(
        self, config: uvicorn.Config, notifier: Notifier, ready: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__(config)
        self.notifier = notifier
        self.ready = ready
        self.liveness = Liveness()
        self.said_ready = False
        self.watchdog: Watchdog | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.liveness.beat()
            self.watchdog = Watchdog(self.notifier, loop_alive(self.liveness, self.notifier)).start()
            self._say_ready()

    async def on_tick(self, counter: int) -> bool:
        self.liveness.beat()
        self._say_ready()
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn takes SIGTERM while it serves and re-raises it only once it has drained; the
        # manager hears STOPPING=1 as the stop begins, not after.
        self.notifier.stopping()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()  # STOPPING=1 was sent: no ping may suggest otherwise
        await super().shutdown(sockets)

    def _say_ready(self) -> None:
        if not self.said_ready and self.started and not self.should_exit and self.ready():
            self.said_ready = True
            self.notifier.ready()
