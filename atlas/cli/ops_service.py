"""`atlas-ops service start|stop|restart|status NAME|all`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.ops.services import SERVICES, ServiceManager, ServiceStatus, names, pick_manager

backend_option = click.option(
    "--backend",
    type=click.Choice(["auto", "systemd", "local"]),
    default=None,
    help="auto: systemd when its units are installed, else the local supervisor"
    " [default: ATLAS_SERVICE_BACKEND, auto].",
)
all_option = click.option("--all", "all_", is_flag=True, help="Every service (same as NAME `all`).")
name_argument = click.argument(
    "name", required=False, type=click.Choice([*SERVICES, "all"]), metavar="NAME|all"
)


def atlas_has_command(command: str) -> bool:
    """Whether this build's `atlas` runs `command` (monitor and alert-router arrive with their issues)."""
    from atlas.cli.main import atlas

    return command in atlas.commands


def manager(backend: str | None) -> ServiceManager:
    settings = settings_or_exit()
    return pick_manager(settings, backend or settings.service_backend, installed=atlas_has_command)


def _targets(name: str | None, all_: bool) -> list[str]:
    if all_ or name == "all":
        return names("all")
    if name is None:
        raise click.UsageError("give a service NAME or `all` (or --all)")
    return names(name)


def _row(s: ServiceStatus) -> dict[str, Any]:
    return {
        "service": s.name,
        "state": s.state,
        "pid": s.pid or "-",
        "uptime": "-" if s.uptime_seconds is None else _duration(s.uptime_seconds),
        "rss": "-" if s.rss_bytes is None else f"{s.rss_bytes / 2**20:.1f} MiB",
        "health": s.health or "-",
        "message": s.message,
    }


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60}m{s % 60}s"


def _report(fmt: str, statuses: list[ServiceStatus]) -> None:
    if fmt == "json":
        emit(fmt, {"services": [s.as_dict() for s in statuses]})
        return
    emit(fmt, [_row(s) for s in statuses])
    for s in statuses:
        if s.state == "failed" and s.log_tail:
            click.echo(f"\n-- {s.name}: last log lines --")
            for line in s.log_tail:
                click.echo(line)


def _each(
    action: Callable[[ServiceManager, str], ServiceStatus], targets: list[str], backend: str | None
) -> list[ServiceStatus]:
    mgr = manager(backend)
    return [action(mgr, n) for n in targets]


@click.group()
def service() -> None:
    """Start, stop and inspect Atlas's processes (systemd units, or the local supervisor).

    \b
    Exit codes: 0 done; 1 a service failed to start or stop, or (status) one has failed;
    2 bad usage.
    """


@service.command("start")
@name_argument
@all_option
@backend_option
@format_option
@clean_errors
def start(name: str | None, all_: bool, backend: str | None, fmt: str) -> None:
    """Start NAME (or all) and wait until each is ready. Services not in this build are skipped."""
    _report(fmt, _each(lambda m, n: m.start(n), _targets(name, all_), backend))


@service.command("stop")
@name_argument
@all_option
@backend_option
@format_option
@clean_errors
def stop(name: str | None, all_: bool, backend: str | None, fmt: str) -> None:
    """Stop NAME (or all): SIGTERM, then SIGKILL after the grace period."""
    # Reverse start order: the API stops taking items before the engine stops processing them.
    _report(fmt, list(reversed(_each(lambda m, n: m.stop(n), _targets(name, all_)[::-1], backend))))


@service.command("restart")
@name_argument
@all_option
@backend_option
@format_option
@clean_errors
def restart(name: str | None, all_: bool, backend: str | None, fmt: str) -> None:
    """Stop then start NAME (or all)."""
    _report(fmt, _each(lambda m, n: m.restart(n), _targets(name, all_), backend))


@service.command("status")
@name_argument
@all_option
@backend_option
@format_option
@clean_errors
def status(name: str | None, all_: bool, backend: str | None, fmt: str) -> None:
    """State, pid, uptime, RSS and health of NAME (default: all); a failed one's last log lines."""
    statuses = _each(lambda m, n: m.status(n), _targets(name or "all", all_), backend)
    _report(fmt, statuses)
    if any(s.state == "failed" for s in statuses):
        sys.exit(1)
