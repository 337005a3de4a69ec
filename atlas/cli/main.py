"""`atlas`: run Atlas's processes."""

from __future__ import annotations

import click

from atlas import __version__
from atlas.cli.common import clean_errors, document_exit_codes, settings_or_exit
from atlas.cli.monitor import monitor
from atlas.ops.processes import run_api, run_core, run_exporter, run_services, run_up


@click.group()
@click.version_option(__version__, prog_name="atlas")
def atlas() -> None:
    """Run Atlas processes. Settings: config/<env>.env < ATLAS_* variables (`atlas-ops config schema`)."""


@atlas.command()
@click.option("--pipeline", default=None, hidden=True, help="module:function building the pipeline.")
@clean_errors
def core(pipeline: str | None) -> None:
    """The engine: claim due items, run the pipeline, retry, dead-letter."""
    raise SystemExit(run_core(settings_or_exit(), pipeline=pipeline, process="atlas-core"))


@atlas.command()
@clean_errors
def up() -> None:
    """Everything in one process on the embedded SQLite (development)."""
    raise SystemExit(run_up(settings_or_exit()))


@atlas.command()
@clean_errors
def api() -> None:
    """The HTTP API (one worker: more throughput comes from more processes on more ports)."""
    raise SystemExit(run_api(settings_or_exit()))


@atlas.command()
@clean_errors
def exporter() -> None:
    """The node exporter: system metrics (node_exporter names) and business gauges on /metrics."""
    raise SystemExit(run_exporter(settings_or_exit()))


@atlas.command()
@clean_errors
def services() -> None:
    """Scheduled work: feed polling (each feed's new entries become url items)."""
    raise SystemExit(run_services(settings_or_exit()))


@atlas.command("alert-router")
@clean_errors
def alert_router() -> None:
    """The alert router: Alertmanager webhooks to email, webhook and Slack from a durable outbox."""
    from atlas.alerting.router.process import run_router

    raise SystemExit(run_router(settings_or_exit()))


atlas.add_command(monitor)  # its own module: the agent's flags are the operations guide's

document_exit_codes(atlas)  # last: every command is added by now
