"""`atlas-ops logs NAME [--since 1h] [--level error] [--follow]`."""

from __future__ import annotations

import os
import time

import click

from atlas.cli.common import clean_errors
from atlas.cli.ops_service import backend_option, manager
from atlas.ops.logs import JOURNAL_PRIORITY, LEVELS, follow, parse_since, select
from atlas.ops.services import SERVICES
from atlas.ops.services.local import LocalSupervisor, log_path, tail
from atlas.ops.services.systemd import SystemdManager


@click.command("logs")
@click.argument("name", type=click.Choice(list(SERVICES)))
@click.option("--since", default=None, help="Only lines newer than this: 30s, 15m, 1h, 2d.")
@click.option("--level", type=click.Choice(LEVELS), default=None, help="Only lines at or above this level.")
@click.option(
    "--lines",
    "-n",
    "count",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="At most this many (the newest).",
)
@click.option("--follow", "-f", "keep_following", is_flag=True, help="Keep printing new lines (Ctrl-C ends).")
@backend_option
@clean_errors
def logs(
    name: str, since: str | None, level: str | None, count: int, keep_following: bool, backend: str | None
) -> None:
    """A service's JSON log lines, from journald or the local supervisor's files alike.

    \b
    Exit codes: 0 done; 2 bad usage.
    """
    try:
        since_seconds = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    mgr = manager(backend)
    if isinstance(mgr, SystemdManager):
        argv = mgr.journalctl_argv(
            name, count, f"-{int(since_seconds)}s" if since_seconds else None, keep_following
        )
        if level:
            argv += ["-p", JOURNAL_PRIORITY[level]]
        os.execvp(argv[0], argv)  # journalctl prints and follows; nothing for us to add
    assert isinstance(mgr, LocalSupervisor)
    path = log_path(mgr.settings.data_dir, name)
    # Read the whole file's tail generously, filter, then keep the newest `count` lines.
    picked = list(
        select(tail(path, max(count * 20, 10_000)), since_seconds=since_seconds, level=level, now=time.time())
    )
    for line in picked[-count:]:
        click.echo(line)
    if keep_following:

        def emit(line: str) -> None:
            for kept in select([line], since_seconds=None, level=level, now=time.time()):
                click.echo(kept)

        try:
            follow(path, emit, stop=lambda: False)
        except KeyboardInterrupt:
            pass
