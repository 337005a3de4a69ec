"""`atlas-ops install`: user, directories, config and systemd units for a host (atlas/ops/install.py)."""

from __future__ import annotations

from pathlib import Path

import click

from atlas.cli.common import clean_errors
from atlas.ops.install import UNIT_DIR, apply, plan
from atlas.ops.units import DEFAULT_PREFIX, USER, Layout

# The config the repository ships (config/*.env, alerting.yaml, monitoring.yaml): next to atlas/.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config"


@click.command("install")
@click.option(
    "--prefix",
    type=click.Path(path_type=Path),
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Where Atlas lives on the host.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option(
    "--environment",
    type=click.Choice(["development", "staging", "production"]),
    default="production",
    show_default=True,
    help="The environment the units run (ATLAS_ENVIRONMENT in config/atlas.env).",
)
@click.option("--user", default=USER, show_default=True, help="The service user.")
@click.option(
    "--no-create-user", is_flag=True, help="The service user exists already (or is managed elsewhere)."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    help="Install into this directory as if it were / (images, tests); units still name --prefix.",
)
@click.option(
    "--config-from",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=SHIPPED_CONFIG,
    show_default=True,
    help="Config to copy in (files already installed are kept).",
)
@clean_errors
def install(
    prefix: Path,
    dry_run: bool,
    environment: str,
    user: str,
    no_create_user: bool,
    root: Path,
    config_from: Path,
) -> None:
    """Create the service user, <prefix>/{config,data,logs,backups,releases} with their owners and
    modes, the config, and the systemd units rendered for <prefix>."""
    if not prefix.is_absolute():
        raise click.BadParameter(f"must be an absolute path (got {prefix})", param_hint="--prefix")
    layout = Layout(prefix, user)
    steps = plan(
        layout, root=root, environment=environment, config_src=config_from, create_user=not no_create_user
    )
    if dry_run:
        click.echo("# dry run: nothing changed")
        for step in steps:
            click.echo(step.describe())
        return
    for line in apply(steps, layout):
        click.echo(line)
    units = root / UNIT_DIR.relative_to("/")
    click.echo(f"# units in {units}; next: systemctl daemon-reload && systemctl enable --now atlas.target")
