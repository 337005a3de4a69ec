"""Checks a process makes before it starts anything: every port it will listen on is free.

A port in use found only when its server starts comes as an OSError traceback after other parts
(the API) have already started and stopped. Checked first, it is one line naming the setting.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from atlas.errors import ConfigError
from atlas.settings import Settings


@dataclass(frozen=True)
class Listen:
    """One address a process will listen on, and the settings that chose it."""

    port_setting: str
    host_setting: str
    host: str
    port: int


def listens(
    settings: Settings,
    *,
    api: bool = False,
    core_metrics: bool = False,
    exporter: bool = False,
    router: bool = False,
) -> list[Listen]:
    """The addresses a process serving these parts binds (port 0 = off or any free port: skipped)."""
    wanted = [
        (api, "ATLAS_API_PORT", "ATLAS_API_HOST", settings.api_host, settings.api_port),
        (
            core_metrics,
            "ATLAS_CORE_METRICS_PORT",
            "ATLAS_CORE_METRICS_HOST",
            settings.core_metrics_host,
            settings.core_metrics_port,
        ),
        (
            exporter,
            "ATLAS_EXPORTER_PORT",
            "ATLAS_EXPORTER_HOST",
            settings.exporter_host,
            settings.exporter_port,
        ),
        (router, "ATLAS_ROUTER_PORT", "ATLAS_ROUTER_HOST", settings.router_host, settings.router_port),
    ]
    return [Listen(p, h, host, port) for on, p, h, host, port in wanted if on and port]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _problem(listen: Listen) -> str | None:
    where = _address(listen.host, listen.port)
    try:
        infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"{listen.host_setting}={listen.host}: cannot resolve the address ({exc.strerror or exc})"
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            # As the servers themselves bind: a port in TIME_WAIT is usable, a listening one is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{listen.port_setting}={listen.port}: address {where} already in use"
        return (
            f"{listen.port_setting}={listen.port}, {listen.host_setting}={listen.host}:"
            f" cannot listen on {where} ({exc.strerror or exc})"
        )
    return None


def check_ports(wanted: list[Listen]) -> None:
    """Raise ConfigError naming every setting whose port is taken or cannot be bound."""
    problems = []
    seen: dict[int, Listen] = {}
    for listen in wanted:
        other = seen.get(listen.port)
        if other is not None:
            problems.append(f"{listen.port_setting}={listen.port}: the same port as {other.port_setting}")
            continue
        seen[listen.port] = listen
        problem = _problem(listen)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("\n".join(problems))
