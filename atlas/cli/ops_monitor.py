"""`atlas-ops monitoring status|metrics|analyze`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.cli.ops_service import atlas_has_command, backend_option
from atlas.ops.checks import EXIT_CODES
from atlas.ops.services import pick_manager

# atlas.ops.monitoring is imported inside each command: it pulls in the monitoring agent (httpx,
# the alert router's channels), which every other atlas-ops command would otherwise load too.


@click.group()
def monitoring() -> None:
    """Health and business figures, live metrics, memory growth."""


@monitoring.command("status")
@backend_option
@format_option
@clean_errors
def status(backend: str | None, fmt: str) -> None:
    """Every component's health (API, engine, database, backlog, exporter, backups, disk, memory,
    services) and the key business figures: backlog by state, DLQ, finished in the last hour, the
    oldest queued item's age.

    \b
    Exit codes: 0 healthy, 1 degraded, 2 unhealthy, or no database / an old schema (nothing is
    created or migrated).
    """
    from atlas.ops.monitoring import status_report

    settings = settings_or_exit()
    manager = pick_manager(settings, backend or settings.service_backend, installed=atlas_has_command)
    report = status_report(settings, manager)
    if fmt == "json":
        emit(fmt, report)
    else:
        emit(fmt, report["components"], ["name", "status", "value", "threshold", "message"])
        b = report["business"]
        click.echo("")
        emit(
            fmt,
            {
                "queued": b["backlog"]["queued"],
                "leased": b["backlog"]["leased"],
                "dlq": b["dlq"],
                "done_last_hour": b["done_last_hour"],
                "dead_last_hour": b["finished_last_hour"].get("dead", 0),
                "oldest_queued_age": f"{b['oldest_queued_age_seconds']:.0f}s",
            },
        )
        click.echo(f"overall: {report['status']}")
    sys.exit(EXIT_CODES[report["status"]])


@monitoring.command("metrics")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "prometheus"]),
    default="table",
    show_default=True,
    help="json for programs, table for people, prometheus: the text format as served.",
)
@click.option("--filter", "word", default=None, help="Only metrics whose name contains WORD (e.g. memory).")
@clean_errors
def metrics(fmt: str, word: str | None) -> None:
    """Scrape every running Atlas /metrics endpoint on this machine (API, engine, exporter, alert
    router) and print the samples.

    \b
    Exit codes: 0 at least one endpoint answered; 1 none did (Atlas not running).
    """
    from atlas.ops.monitoring import exposition, samples, scrape_all

    scrapes = scrape_all(settings_or_exit())
    for s in scrapes:
        if s.text is None:
            click.echo(f"warning: {s.job} {s.url}: {s.error}", err=True)
    if fmt == "prometheus":
        click.echo(exposition(scrapes, word))
        return
    rows = samples(scrapes, word)
    if fmt == "json":
        emit(
            fmt,
            {
                "targets": [
                    {"job": s.job, "url": s.url, "up": s.text is not None, "error": s.error} for s in scrapes
                ],
                "samples": rows,
            },
        )
        return
    emit(
        fmt,
        [
            {
                "job": r["job"],
                "name": r["name"],
                "labels": json.dumps(r["labels"], sort_keys=True) if r["labels"] else "",
                "value": r["value"],
            }
            for r in rows
        ],
    )


@monitoring.command("analyze")
@click.option("--memory", is_flag=True, required=True, help="RSS history per service with a growth verdict.")
@click.option(
    "--hours", type=click.FloatRange(min=0.01), default=24.0, show_default=True, help="How far back."
)
@click.option("--history", is_flag=True, help="Table: also list every sample.")
@format_option
@clean_errors
def analyze(memory: bool, hours: float, history: bool, fmt: str) -> None:
    """Memory per service from the samples `atlas services` records every ATLAS_RSS_SAMPLE_SECONDS:
    first, last and peak RSS, the growth rate in MB/hour over the current run (least squares) and a
    verdict (growing above 1 MB/hour, stable, insufficient data).

    \b
    Exit codes: 0 no service growing; 1 one is growing, or there are no samples (is `atlas
    services` running?); 2 no database / an old schema (nothing is created or migrated).
    """
    from atlas.ops.monitoring import memory_report

    rows = memory_report(settings_or_exit(), hours)
    if fmt == "json":
        emit(fmt, {"hours": hours, "services": rows})
    else:
        emit(
            fmt,
            rows,
            [
                "service",
                "pid",
                "samples",
                "restarts",
                "span_hours",
                "first_mb",
                "last_mb",
                "peak_mb",
                "rate_mb_per_hour",
                "verdict",
            ],
        )
        if history:
            for r in rows:
                click.echo(f"\n-- {r['service']} --")
                for h in r["history"]:
                    at = datetime.fromtimestamp(h["at"], UTC).isoformat(timespec="seconds")
                    click.echo(f"{at}  pid {h['pid']}  {h['rss_bytes'] / 1e6:.1f} MB")
    if not rows:
        click.echo(
            f"error: no memory samples in the last {hours:g} h: `atlas services` records them"
            " (atlas-ops service start services)",
            err=True,
        )
        sys.exit(1)
    sys.exit(1 if any(r["verdict"] == "growing" for r in rows) else 0)
