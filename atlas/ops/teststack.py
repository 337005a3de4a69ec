"""A throwaway Atlas for `atlas-ops test load|failover`: api and core as separate processes.

The stack lives in a temporary directory (data, an empty config directory so an operator's env
files do not leak in, logs), on free ports of 127.0.0.1, run by the local supervisor so the
failover test can SIGKILL and restart one process at a time. The engine's fetches may reach
127.0.0.1 and `localhost` (the load origin) through ATLAS_FETCH_ALLOW_HOSTS. An admin API key
is created for the run; the directory is removed when the stack stops unless `keep` is set.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
from pathlib import Path

from atlas.api.keys import create_key
from atlas.config.loader import load_settings
from atlas.ops.services import api_base
from atlas.ops.services.local import LocalSupervisor
from atlas.settings import Settings
from atlas.store import open_store

# The processes the load reaches, in start order: the engine creates the schema, the API serves it.
STACK_SERVICES = ("core", "api")


def _ephemeral_low() -> int:
    """The lowest port Linux gives outgoing connections (their local ports)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server the caller starts next.

    Chosen below the kernel's ephemeral range when it can be: a port the OS hands out for bind
    port 0 comes from that range, which every outgoing connection draws its local port from too,
    so under parallel tests some client's connection took it before the server bound it ("address
    already in use"). Below the range only another server can take it."""
    low = _ephemeral_low()
    if low > 12_000:
        for _ in range(50):
            port = random.randrange(10_000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalStack:
    def __init__(self, extra_env: dict[str, str] | None = None, *, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="atlas-test-stack-"))
        self.keep = keep
        (self.root / "config").mkdir()
        self.core_metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
        env |= {
            "ATLAS_ENVIRONMENT": "development",
            "ATLAS_DATA_DIR": str(self.root / "data"),
            "ATLAS_CONFIG_DIR": str(self.root / "config"),
            "ATLAS_API_HOST": "127.0.0.1",
            "ATLAS_API_PORT": str(free_port()),
            "ATLAS_CORE_METRICS_HOST": "127.0.0.1",
            "ATLAS_CORE_METRICS_PORT": str(self.core_metrics_port),
            "ATLAS_EXPORTER_PORT": "0",
            "ATLAS_FETCH_ALLOW_HOSTS": "127.0.0.1,localhost",
            # Politeness protects other people's servers; the load origin is ours, and at the default
            # 2 requests/s per host the URL items would measure the politeness bucket, not Atlas.
            "ATLAS_HOST_RATE_OVERRIDES": "127.0.0.1=1000,localhost=1000",
            "ATLAS_SERVICE_BACKEND": "local",
        }
        self.env = env | (extra_env or {})
        self.settings: Settings = load_settings(self.env, secrets=False)
        self.supervisor = LocalSupervisor(self.settings, env=self.env)
        self.api_key = ""

    @property
    def url(self) -> str:
        return api_base(self.settings)

    @property
    def core_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.core_metrics_port}/metrics"

    def start(self) -> LocalStack:
        """Start core then api (each waits for readiness); raises ServiceError if one fails."""
        try:
            for name in STACK_SERVICES:
                self.supervisor.start(name)
            store = open_store(self.settings, migrate=False)
            try:
                key = create_key(store, self.settings.api_key_pepper, "atlas-ops test", ["admin"])
            finally:
                store.close()
            self.api_key = str(key["key"])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in reversed(STACK_SERVICES):
            self.supervisor.stop(name)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
