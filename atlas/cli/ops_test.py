"""`atlas-ops test load|failover`: built-in load and failover tests against a real Atlas."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from atlas.cli.common import clean_errors, emit, format_option
from atlas.ops.loadtest import LoadConfig, LoadStats, run_load


@click.group("test")
def test_group() -> None:
    """Built-in load and failover tests (a throwaway local stack unless --target is given)."""


def _progress(duration: float) -> tuple[Progress, Any, Any]:
    """A live display on stderr (stdout stays the report): posting rate and errors, then the drain."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    load = progress.add_task("load ", total=duration, info="")
    drain = progress.add_task("drain", total=None, info="", visible=False)

    def on_load(stats: LoadStats) -> None:
        now = time.monotonic()
        info = f"{stats.accepted} accepted  {stats.rate(now):.0f}/s  {stats.shed} shed  {stats.errors} errors"
        progress.update(load, completed=min(duration, now - stats.started), info=info)

    def on_drain(final: int, total: int) -> None:
        progress.stop_task(load)
        progress.update(drain, visible=True, total=total, completed=final, info=f"{final}/{total} final")

    return progress, on_load, on_drain


stack_env_option = click.option(
    "--stack-env",
    multiple=True,
    metavar="ATLAS_NAME=VALUE",
    help="A setting for the local stack's processes (repeatable), e.g. ATLAS_WORKERS=2.",
)


def _pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE options as a dict; exit 2 naming a malformed one."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("ATLAS_"):
            click.echo(f"error: --stack-env {pair!r}: expected ATLAS_NAME=VALUE", err=True)
            sys.exit(2)
        out[key] = value
    return out


def _table(report: dict[str, Any]) -> None:
    rows = [{"figure": k, "value": v} for k, v in report.items() if k not in ("problems", "passed")]
    emit("table", rows)
    for problem in report["problems"]:
        click.echo(f"FAIL: {problem}")
    click.echo("PASS" if report["passed"] else "FAILED")


@test_group.command("load")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of posting.")
@click.option("--concurrent", type=int, default=10, show_default=True, help="Clients posting at once.")
@click.option(
    "--batch", type=int, default=1, show_default=True, help="Items per request (>1: /v1/items/batch)."
)
@click.option(
    "--target", default=None, help="An Atlas API base URL; default: a local stack started for the run."
)
@click.option(
    "--api-key",
    envvar="ATLAS_API_KEY",
    default=None,
    help="Key with ingest and read scopes, for --target [env ATLAS_API_KEY].",
)
@click.option(
    "--url-share",
    type=float,
    default=0.5,
    show_default=True,
    help="Share of items that are URLs of a load origin started on 127.0.0.1 (0: documents only).",
)
@click.option("--max-requests", type=int, default=None, help="Stop after this many requests.")
@click.option(
    "--drain-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for items to finish.",
)
@click.option(
    "--error-threshold",
    type=float,
    default=0.01,
    show_default=True,
    help="Share of requests that may fail before the run fails.",
)
@click.option("--quiet", is_flag=True, help="No live progress.")
@stack_env_option
@format_option
@clean_errors
def load(
    duration: float,
    concurrent: int,
    batch: int,
    target: str | None,
    api_key: str | None,
    url_share: float,
    max_requests: int | None,
    drain_timeout: float,
    error_threshold: float,
    quiet: bool,
    stack_env: tuple[str, ...],
    fmt: str,
) -> None:
    """Drive the ingest API with documents and URLs; report accepted, shed (429/503), errors,
    throughput, latency p50/p95/p99, accept-to-done latency and the backlog at the end.

    With --target the origin's URLs must be fetchable by that Atlas (same machine, with
    ATLAS_FETCH_ALLOW_HOSTS=127.0.0.1,localhost); use --url-share 0 otherwise.

    Exit codes: 0 passed; 1 an acknowledged item was lost, errors passed the threshold or nothing
    was accepted, or the local stack did not start (its log is shown); 2 bad options.
    """
    config = LoadConfig(
        duration_seconds=duration,
        concurrent=concurrent,
        batch=batch,
        url_share=url_share,
        max_requests=max_requests,
        drain_seconds=drain_timeout,
        error_threshold=error_threshold,
    )
    env = _pairs(stack_env)
    try:
        config.check()
        if target is not None and not api_key:
            raise ValueError("--api-key (or ATLAS_API_KEY) is needed with --target")
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    progress, on_load, on_drain = _progress(duration)
    with progress if not quiet else nullcontext():
        report = run_load(
            config,
            target=target,
            api_key=api_key,
            urls=url_share > 0,
            stack_env=env,
            on_progress=None if quiet else on_load,
            on_drain=None if quiet else on_drain,
        )
    if fmt == "json":
        emit("json", report)
    else:
        _table(report)
    sys.exit(0 if report["passed"] else 1)


@test_group.command("failover")
@click.option("--concurrent", type=int, default=4, show_default=True, help="Clients posting at once.")
@click.option(
    "--phase-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds one phase may wait (a restart, the breaker opening or closing).",
)
@click.option(
    "--drain-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for items to finish.",
)
@stack_env_option
@format_option
@clean_errors
def failover(
    concurrent: int, phase_timeout: float, drain_timeout: float, stack_env: tuple[str, ...], fmt: str
) -> None:
    """While load runs on a local stack (api and core as separate processes): SIGKILL the engine
    and restart it, SIGKILL the API and restart it, make the origin fail for one host until its
    breaker opens, then heal it. Checks, each PASS or FAIL: the restarts, every acknowledged item
    stored and final, the breaker opened and recovered, nothing processed twice.

    Exit codes: 0 every check passed; 1 a check failed or the stack did not start; 2 bad options.
    """
    from atlas.ops.failover import Failover, FailoverConfig

    if concurrent < 1:
        click.echo(f"error: --concurrent must be >= 1 (got {concurrent})", err=True)
        sys.exit(2)
    console = Console(stderr=True)
    config = FailoverConfig(
        concurrent=concurrent, phase_timeout_seconds=phase_timeout, drain_seconds=drain_timeout
    )
    with console.status("failover test") as status:

        def event(line: str) -> None:
            console.print(f"[{time.strftime('%H:%M:%S')}] {line}")
            status.update(f"failover test: {line}")

        report = Failover(config, _pairs(stack_env), on_event=event).run()
    if fmt == "json":
        emit("json", report)
    else:
        emit("table", report["checks"], ["check", "result", "detail"])
        click.echo("PASS" if report["passed"] else "FAILED")
    sys.exit(0 if report["passed"] else 1)
