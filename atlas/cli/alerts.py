"""`atlas-ops alerts`: compile alerting.yaml into Prometheus rules, Alertmanager routing and tests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from atlas.alerting.compiler import compile_files
from atlas.alerting.config import read_alerting
from atlas.cli.common import clean_errors


@click.group()
def alerts() -> None:
    """Alert rules compiled from config/alerting.yaml."""


def write_files(out: Path, files: dict[str, str]) -> list[str]:
    """Write `files` under `out`, removing generated test files no longer produced; returns what changed."""
    changed = []
    for rel, text in files.items():
        path = out / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for stale in sorted((out / "tests").glob("*.yml")):
        if f"tests/{stale.name}" not in files:
            stale.unlink()
            changed.append(f"tests/{stale.name} (removed)")
    return changed


@alerts.command("compile")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ATLAS_CONFIG_DIR",
    default="config",
    show_default=True,
    help="Where alerting.yaml is (ATLAS_CONFIG_DIR).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="alertrules",
    show_default=True,
    help="Where the generated files go.",
)
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 if the files differ from what would be written."
)
@clean_errors
def compile_cmd(config_dir: Path, out: Path, check: bool) -> None:
    """Write atlas.rules.yml, alertmanager.yml and tests/*.yml (promtool unit tests) under --out."""
    source = config_dir / "alerting.yaml"
    files = compile_files(read_alerting(source), source=str(source))
    if check:
        differ = [
            rel for rel, text in files.items() if not (out / rel).exists() or (out / rel).read_text() != text
        ]
        stale = [p.name for p in (out / "tests").glob("*.yml") if f"tests/{p.name}" not in files]
        for rel in differ + stale:
            click.echo(f"out of date: {out / rel}", err=True)
        sys.exit(1 if differ or stale else 0)
    changed = write_files(out, files)
    click.echo(
        f"{len(files)} files in {out}/, {len(changed)} changed"
        + (f": {', '.join(changed)}" if changed else "")
    )
