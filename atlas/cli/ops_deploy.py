"""`atlas-ops deploy | rollback | deployment status | version list` (atlas/ops/deploy.py, releases.py).

Exit codes: 0 done; 1 the deployment failed (and what changed was rolled back) or was refused
because the system is unhealthy; 2 bad input (an unknown release, a release whose migrations are
not marked backward compatible, a bad option).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from atlas.cli.common import clean_errors, emit, format_option
from atlas.config.loader import load_settings
from atlas.errors import ConfigError
from atlas.ops import deploy as dm
from atlas.ops import releases
from atlas.ops.maintenance import default_actor
from atlas.ops.nginx import Nginx
from atlas.settings import ENVIRONMENTS, Settings

F = TypeVar("F", bound=Callable[..., Any])

prefix_option = click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The install prefix: releases/ and deploy/ (state, history) "
    "[default: ATLAS_INSTALL_PREFIX, /opt/atlas].",
)
environment_option = click.option(
    "--environment",
    type=click.Choice(ENVIRONMENTS),
    default=None,
    help="The environment (required): its settings (config/<environment>.env) and its deployment state.",
)


def target_options(fn: F) -> F:
    """How to reach the environment's processes and nginx; each defaults to its ATLAS_* setting."""
    options = [
        prefix_option,
        environment_option,
        click.option(
            "--backend",
            type=click.Choice(["auto", "systemd", "local"]),
            default=None,
            help="Service backend [default: ATLAS_SERVICE_BACKEND, auto].",
        ),
        click.option(
            "--ports",
            default=None,
            help="The blue and green API ports, e.g. 8000,8001 "
            "[default: ATLAS_DEPLOY_BLUE_PORT,ATLAS_DEPLOY_GREEN_PORT].",
        ),
        click.option(
            "--nginx-upstream",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="nginx's include holding `upstream atlas_api` [default: ATLAS_NGINX_UPSTREAM_FILE].",
        ),
        click.option(
            "--gate-timeout",
            type=click.FloatRange(min=1),
            default=None,
            help="Seconds a restarted service has to be ready "
            "[default: ATLAS_DEPLOY_GATE_TIMEOUT_SECONDS, 60].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _settings(environment: str | None = None) -> tuple[Settings, dict[str, str]]:
    env = dict(os.environ) | ({"ATLAS_ENVIRONMENT": environment} if environment else {})
    return load_settings(env), env


def _prefix(prefix: Path | None) -> Path:
    return prefix if prefix is not None else _settings()[0].install_prefix


def _target(opts: dict[str, Any]) -> dm.Target:
    environment = opts["environment"]
    if environment is None:
        raise click.UsageError("--environment is required")
    settings, env = _settings(environment)
    ports = (settings.deploy_blue_port, settings.deploy_green_port)
    if opts["ports"] is not None:
        try:
            a, b = (int(p) for p in str(opts["ports"]).split(","))
        except ValueError:
            raise ConfigError(f"--ports: expected two ports like 8000,8001 (got {opts['ports']!r})") from None
        ports = (a, b)
    if ports[0] == ports[1]:
        raise ConfigError(f"--ports: blue and green must differ (got {ports[0]} twice)")
    backend = opts["backend"] or settings.service_backend
    if backend == "auto":
        from atlas.ops.services.systemd import systemd_available

        backend = "systemd" if systemd_available() else "local"
    upstream = opts["nginx_upstream"] or settings.nginx_upstream_file
    nginx = None
    if upstream is not None:
        nginx = Nginx(upstream, settings.nginx_reload_command, settings.nginx_pid_file)
    return dm.Target(
        prefix=opts["prefix"] or settings.install_prefix,
        environment=environment,
        settings=settings,
        env=env,
        backend=backend,
        ports=ports,
        nginx=nginx,
        gate_timeout=opts["gate_timeout"] or settings.deploy_gate_timeout_seconds,
        drain_timeout=settings.deploy_drain_timeout_seconds,
        by=default_actor(),
        log=lambda line: click.echo(f"# {line}", err=True),
    )


@click.group("deploy", invoke_without_command=True)
@click.option("--version", "version", default=None, help="The prepared release to deploy.")
@click.option(
    "--strategy", type=click.Choice(dm.STRATEGIES), default="rolling", show_default=True, help="How."
)
@click.option("--no-backup", is_flag=True, help="Skip the backup taken before anything changes.")
@target_options
@format_option
@click.pass_context
@clean_errors
def deploy(
    ctx: click.Context, /, version: str | None, strategy: str, no_backup: bool, fmt: str, **opts: Any
) -> None:
    """Deploy a prepared release: `deploy --version V --environment ENV --strategy rolling|blue-green`;
    `deploy prepare SRC --version V` builds one.

    Exit 1: failed (and rolled back) or the system is unhealthy; 2: bad input (an unknown release,
    migrations not marked backward compatible)."""
    if ctx.invoked_subcommand is not None:
        return
    if version is None:
        raise click.UsageError("--version is required (or a subcommand: prepare)")
    emit(fmt, dm.deploy(_target(opts), version, strategy, backup=not no_backup))


@deploy.command("prepare")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--version", "version", required=True, help="The release's name (its directory).")
@click.option(
    "--link-current-env",
    is_flag=True,
    help="Tests and development: no pip; the release runs SRC's code on its own interpreter with "
    "the dependencies of the environment running atlas-ops (seconds instead of a minute).",
)
@prefix_option
@format_option
@clean_errors
def prepare(src: Path, version: str, link_current_env: bool, prefix: Path | None, fmt: str) -> None:
    """Build <prefix>/releases/VERSION: a virtual environment from SRC (a wheel or a source tree)."""
    release = releases.prepare(_prefix(prefix), src, version, link_env=link_current_env)
    emit(fmt, {"version": release.version, "path": str(release.root)} | release.meta)


@click.command("rollback")
@click.option("--target-version", required=True, help="The release to go back to.")
@click.option(
    "--strategy",
    type=click.Choice(dm.STRATEGIES),
    default=None,
    help="[default: blue-green with nginx, else rolling]",
)
@click.option("--no-backup", is_flag=True, help="Skip the backup taken before anything changes.")
@target_options
@format_option
@clean_errors
def rollback(target_version: str, strategy: str | None, no_backup: bool, fmt: str, **opts: Any) -> None:
    """Put --target-version back live (a deployment of it; its migrations are already applied)."""
    emit(fmt, dm.rollback(_target(opts), target_version, strategy, backup=not no_backup))


@click.group("deployment")
def deployment() -> None:
    """The deployment state of an environment."""


@deployment.command("status")
@click.option(
    "--history", "last", type=click.IntRange(min=0), default=10, show_default=True, help="History lines."
)
@target_options
@format_option
@clean_errors
def status(last: int, fmt: str, **opts: Any) -> None:
    """Current version, color, per-service state and health, and the last deployments."""
    report = dm.status(_target(opts), last)
    if fmt == "json":
        emit(fmt, report)
        return
    click.echo(
        f"environment {report['environment']}: version {report['version'] or '-'}, "
        f"api on {report['api_port']} ({report['color']})"
    )
    emit("table", [{"service": n} | s for n, s in report["services"].items()])
    click.echo("history:")
    emit(
        "table",
        [
            {
                "at": _when(h.get("at")),
                "action": h.get("action"),
                "version": h.get("version"),
                "strategy": h.get("strategy"),
                "by": h.get("by"),
                "result": h.get("result"),
                "message": str(h.get("message") or "")[:80],
            }
            for h in report["history"]
        ],
    )


@click.group("version")
def version() -> None:
    """Releases."""


@version.command("list")
@prefix_option
@format_option
@clean_errors
def version_list(prefix: Path | None, fmt: str) -> None:
    """Releases under <prefix>/releases, where each is current, and when each was last deployed."""
    rows = dm.version_list(_prefix(prefix))
    if fmt == "table":
        rows = [
            r
            | {
                "current_in": ",".join(r["current_in"]) or "-",
                "prepared_at": _when(r["prepared_at"]),
                "last_deployed_at": _when(r["last_deployed_at"]),
            }
            for r in rows
        ]
    emit(fmt, rows, ["version", "current_in", "last_deployed_at", "prepared_at", "built", "path"])


def _when(at: Any) -> str:
    return "-" if not at else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(at)))
