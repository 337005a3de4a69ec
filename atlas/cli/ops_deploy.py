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
from atlas.errors import ConfigError
from atlas.ops import deploy as dm
from atlas.ops import releases
from atlas.ops.maintenance import default_actor
from atlas.ops.nginx import Nginx
from atlas.ops.units import DEFAULT_PREFIX
from atlas.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])

prefix_option = click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ATLAS_PREFIX",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="The install prefix (releases/, deploy/ state and history) [env ATLAS_PREFIX].",
)
environment_option = click.option(
    "--environment",
    type=click.Choice(["development", "staging", "production"]),
    default=None,
    help="The environment (required): its settings (config/<environment>.env) and its deployment state.",
)


def target_options(fn: F) -> F:
    """How to reach the environment's processes and nginx; each has an ATLAS_DEPLOY_* variable."""
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
            envvar="ATLAS_DEPLOY_PORTS",
            default="8000,8001",
            show_default=True,
            help="The blue and green API ports [env ATLAS_DEPLOY_PORTS].",
        ),
        click.option(
            "--nginx-upstream",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="ATLAS_DEPLOY_NGINX_UPSTREAM",
            default=None,
            help="nginx's include holding `upstream atlas_api` (blue-green) "
            "[env ATLAS_DEPLOY_NGINX_UPSTREAM].",
        ),
        click.option(
            "--nginx-reload",
            envvar="ATLAS_DEPLOY_NGINX_RELOAD",
            default="nginx -s reload",
            show_default=True,
            help="Command that reloads nginx [env ATLAS_DEPLOY_NGINX_RELOAD].",
        ),
        click.option(
            "--nginx-pid",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="ATLAS_DEPLOY_NGINX_PID",
            default=None,
            help="nginx master's pid file: the old color is stopped once its old workers exit "
            "[env ATLAS_DEPLOY_NGINX_PID].",
        ),
        click.option(
            "--gate-timeout",
            type=click.FloatRange(min=1),
            envvar="ATLAS_DEPLOY_GATE_TIMEOUT",
            default=60.0,
            show_default=True,
            help="Seconds a restarted service has to become ready and healthy.",
        ),
        click.option(
            "--drain-timeout",
            type=click.FloatRange(min=0),
            envvar="ATLAS_DEPLOY_DRAIN_TIMEOUT",
            default=30.0,
            show_default=True,
            help="Seconds to wait for nginx's old workers before stopping the old color.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _target(opts: dict[str, Any]) -> dm.Target:
    environment = opts["environment"]
    if environment is None:
        raise click.UsageError("--environment is required")
    env = dict(os.environ) | {"ATLAS_ENVIRONMENT": environment}
    settings = load_settings(env)
    try:
        a, b = (int(p) for p in str(opts["ports"]).split(","))
    except ValueError:
        raise ConfigError(f"--ports: expected two ports like 8000,8001 (got {opts['ports']!r})") from None
    backend = opts["backend"] or settings.service_backend
    if backend == "auto":
        from atlas.ops.services.systemd import systemd_available

        backend = "systemd" if systemd_available() else "local"
    nginx = None
    if opts["nginx_upstream"] is not None:
        nginx = Nginx(opts["nginx_upstream"], opts["nginx_reload"], opts["nginx_pid"])
    return dm.Target(
        prefix=opts["prefix"],
        environment=environment,
        settings=settings,
        env=env,
        backend=backend,
        ports=(a, b),
        nginx=nginx,
        gate_timeout=opts["gate_timeout"],
        drain_timeout=opts["drain_timeout"],
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
@click.argument("src", type=click.Path(exists=True, path_type=Path))
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
def prepare(src: Path, version: str, link_current_env: bool, prefix: Path, fmt: str) -> None:
    """Build <prefix>/releases/VERSION: a virtual environment from SRC (a wheel or a source tree)."""
    release = releases.prepare(prefix, src, version, link_env=link_current_env)
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
def version_list(prefix: Path, fmt: str) -> None:
    """Releases under <prefix>/releases, where each is current, and when each was last deployed."""
    rows = dm.version_list(prefix)
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
