"""`atlas monitor`: the monitoring agent (`tools/monitoring_agent.py` is a shim onto it)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.cli.ops_service import backend_option
from atlas.ops.checks import EXIT_CODES


@click.command()
@click.option("--check-health", "action", flag_value="health", help="Run every health check once and exit.")
@click.option(
    "--test-alerts", "action", flag_value="test-alerts", help="Send a test notification on every channel."
)
@click.option(
    "--daemon",
    "action",
    flag_value="daemon",
    default=True,
    help="Evaluate alerting.yaml and notify until stopped (the default).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="monitoring.yaml [default: CONFIG_DIR/monitoring.yaml].",
)
@backend_option
@format_option
@clean_errors
def monitor(action: str, config_path: Path | None, backend: str | None, fmt: str) -> None:
    """The monitoring agent: health checks, test notifications, alerting without Prometheus.

    \b
    --check-health exit codes (as monitoring plugins read them): 0 healthy, 1 degraded, 2 unhealthy.
    --test-alerts exits 1 when any channel failed.
    """
    settings = settings_or_exit()
    if action == "health":
        from atlas.cli.ops_service import atlas_has_command
        from atlas.monitor.health import agent_report
        from atlas.ops.services import pick_manager

        manager = pick_manager(settings, backend or settings.service_backend, installed=atlas_has_command)
        report = agent_report(settings, manager)
        if fmt == "json":
            emit(fmt, report)
        else:
            emit(fmt, report["components"], ["name", "status", "value", "threshold", "message"])
            click.echo(f"overall: {report['status']}")
        sys.exit(EXIT_CODES[report["status"]])
    if action == "test-alerts":
        from dataclasses import asdict

        from atlas.monitor.testalerts import send_test_alerts

        results = [asdict(r) for r in send_test_alerts(settings, config_path)]
        emit(fmt, results, ["channel", "outcome", "detail"])
        if not any(r["outcome"] != "disabled" for r in results):
            click.echo("error: no enabled channel in monitoring.yaml: nothing was sent", err=True)
            sys.exit(1)
        sys.exit(1 if any(r["outcome"] == "failed" for r in results) else 0)
    from atlas.monitor.daemon import run_monitor

    raise SystemExit(run_monitor(settings, config_path))
