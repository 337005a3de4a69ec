"""Managing Atlas's long-running processes: one small interface, two backends.

    ServiceManager         start / stop / restart / status / log_lines of one service by name
    ├── SystemdManager     systemctl and journalctl, when the atlas-*.service units are installed
    └── LocalSupervisor    detached processes with pid and log files under DATA_DIR (no systemd:
                           development, containers, CI)

`pick_manager` chooses: systemd when systemd runs this machine and the units are installed, else
the local supervisor. Both answer with the same `ServiceStatus`, so the CLI prints one shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from atlas.errors import AtlasError
from atlas.settings import Settings

STATES = ("running", "stopped", "failed", "not-installed", "unknown")


class ServiceError(AtlasError):
    """A service could not be started, stopped or inspected."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # what operators type: api, core, ...
    command: str  # the `atlas` subcommand that runs it
    readiness: str  # "http" (/health/ready) or "pidfile" (the process wrote DATA_DIR/run/<process>.pid)

    @property
    def process(self) -> str:
        """The pid file's (and the exporter's `service` label's) name."""
        return f"atlas-{self.name}"

    @property
    def unit(self) -> str:
        return f"atlas-{self.name}.service"


SERVICES: dict[str, ServiceSpec] = {
    s.name: s
    for s in (
        ServiceSpec("api", "api", "http"),
        ServiceSpec("core", "core", "pidfile"),
        ServiceSpec("services", "services", "pidfile"),
        ServiceSpec("monitoring", "monitor", "pidfile"),
        ServiceSpec("exporter", "exporter", "pidfile"),
        ServiceSpec("alert-router", "alert-router", "pidfile"),
    )
}
# The processes that write the database: a restore stops these (and readers holding the WAL).
WRITERS = ("api", "core", "services")


def spec(name: str) -> ServiceSpec:
    """The service called `name`; raises ServiceError listing the known names."""
    try:
        return SERVICES[name]
    except KeyError:
        raise ServiceError(f"unknown service {name!r} (known: {', '.join(SERVICES)}, all)") from None


def names(name: str) -> list[str]:
    """`all` or one service name -> the names it stands for, in start order."""
    return list(SERVICES) if name == "all" else [spec(name).name]


@dataclass
class ServiceStatus:
    name: str
    state: str  # one of STATES
    backend: str
    pid: int | None = None
    uptime_seconds: float | None = None
    rss_bytes: int | None = None
    health: str | None = None  # healthy | degraded | unhealthy | unknown; None when not running
    message: str = ""
    log_tail: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "backend": self.backend,
            "pid": self.pid,
            "uptime_seconds": None if self.uptime_seconds is None else round(self.uptime_seconds, 1),
            "rss_bytes": self.rss_bytes,
            "health": self.health,
            "message": self.message,
            "log_tail": self.log_tail,
        }


class ServiceManager(Protocol):
    backend: str

    def start(self, name: str) -> ServiceStatus:
        """Start `name` and wait until it is ready; raises ServiceError if it fails to."""
        ...

    def stop(self, name: str) -> ServiceStatus: ...

    def restart(self, name: str) -> ServiceStatus: ...

    def status(self, name: str) -> ServiceStatus: ...

    def log_lines(self, name: str, lines: int) -> list[str]:
        """The service's last `lines` log lines (JSON lines as the process wrote them)."""
        ...


def api_base(settings: Settings) -> str:
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):  # bound everywhere: ask over loopback
        host = "127.0.0.1"
    return f"http://{host}:{settings.api_port}"


def api_ready(settings: Settings, timeout: float = 2.0) -> bool:
    """/health/ready says 200, or 503 for maintenance alone (the process serves; writes wait)."""
    try:
        r = httpx.get(f"{api_base(settings)}/health/ready", timeout=timeout)
    except httpx.HTTPError:
        return False
    if r.status_code == 200:
        return True
    try:
        return r.status_code == 503 and r.json().get("reasons") == ["maintenance"]
    except ValueError:
        return False


def health_verdict(settings: Settings, name: str, timeout: float = 2.0) -> str:
    """The running service's own health verdict: the API's /health status, the exporter's
    atlas_exporter_store_up; for processes with no health endpoint, `healthy` while running."""
    try:
        if name == "api":
            r = httpx.get(f"{api_base(settings)}/health", timeout=timeout)
            return str(r.json().get("status", "unknown"))
        if name == "exporter" and settings.exporter_port:
            host = "127.0.0.1" if settings.exporter_host in ("0.0.0.0", "::") else settings.exporter_host
            r = httpx.get(f"http://{host}:{settings.exporter_port}/metrics", timeout=timeout)
            if r.status_code != 200:
                return "unhealthy"
            return "degraded" if "atlas_exporter_store_up 0.0" in r.text else "healthy"
    except (httpx.HTTPError, ValueError, AttributeError):
        return "unhealthy"
    return "healthy"


def pick_manager(
    settings: Settings,
    backend: str = "auto",
    *,
    installed: Callable[[str], bool] = lambda _command: True,
) -> ServiceManager:
    """The systemd backend when asked for, or (auto) when systemd runs this machine and the Atlas
    units are installed; the local supervisor otherwise. `installed(command)` says whether this
    build has `atlas <command>` (processes later issues add are `not-installed` until then)."""
    from atlas.ops.services.local import LocalSupervisor
    from atlas.ops.services.systemd import SystemdManager, systemd_available

    if backend == "systemd" or (backend == "auto" and systemd_available()):
        return SystemdManager(settings)
    return LocalSupervisor(settings, installed=installed)


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass; returns its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
