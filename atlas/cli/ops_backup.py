"""`atlas-ops backup create|verify|restore|list|schedule`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.cli.ops_service import atlas_has_command
from atlas.ops.backup import create_backup, list_backups, verify_backup
from atlas.ops.backup_schedule import set_schedule
from atlas.ops.restore import restore_backup
from atlas.ops.services.local import LocalSupervisor


@click.group()
def backup() -> None:
    """Back up, verify, restore and schedule (archives: atlas_backup_<UTC time>.tar.gz).

    \b
    Exit codes: 0 done (verify: the archive is sound); 1 failed (verify: the archive is not
    sound, restore: refused); 2 bad usage.
    """


@backup.command("create")
@click.option(
    "--full",
    "kind",
    flag_value="full",
    help="Also the config directory and encrypted secrets (never the key).",
)
@click.option(
    "--database-only", "kind", flag_value="database", default=True, help="Only the database (the default)."
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the archive [default: ATLAS_BACKUP_DIR or DATA_DIR/backups].",
)
@format_option
@clean_errors
def create(kind: str, out: Path | None, fmt: str) -> None:
    """Online, consistent backup while the API and engine keep writing; prints the archive's path."""
    result = create_backup(settings_or_exit(), out, full=kind == "full")
    if fmt == "json":
        emit(
            fmt,
            {
                "path": result["path"],
                "bytes": result["bytes"],
                "manifest": {k: v for k, v in result.items() if k not in ("path", "bytes")},
            },
        )
        return
    click.echo(
        f"{result['path']}  {result['bytes']} bytes, {result['item_total']} items,"
        f" schema {result['schema_version']}"
    )


@backup.command("verify")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@format_option
@clean_errors
def verify(path: Path, fmt: str) -> None:
    """Checksums, the database's check (SQLite: PRAGMA integrity_check on an extracted copy;
    PostgreSQL: pg_restore --list of the dump), schema compatibility.

    Exit 0 only when every check passes."""
    if not path.is_file():
        click.echo(f"error: {path}: no such file", err=True)
        sys.exit(2)
    report = verify_backup(path)
    if fmt == "json":
        emit(fmt, report.as_dict())
    else:
        for c in report.checks:
            click.echo(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<10} {c.message}")
        click.echo(f"{path}: {'OK' if report.ok else 'NOT SOUND'}")
    sys.exit(0 if report.ok else 1)


@backup.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--database",
    "database_only",
    is_flag=True,
    help="Restore the database only (config members are skipped).",
)
@click.option(
    "--by", default=None, help="Who restores (recorded with maintenance mode) [default: user@host]."
)
@format_option
@clean_errors
def restore(path: Path, database_only: bool, by: str | None, fmt: str) -> None:
    """Verify PATH, then restore it into ATLAS_DATA_DIR; services running there under the local
    supervisor are stopped (in maintenance) and restarted. The current database is kept as
    atlas.db.pre-restore-<time>."""
    if not path.is_file():
        click.echo(f"error: {path}: no such file", err=True)
        sys.exit(2)
    settings = settings_or_exit()
    supervisor = LocalSupervisor(settings, installed=atlas_has_command)
    emit(fmt, restore_backup(settings, path, supervisor, by=by, database_only=database_only))


@backup.command("list")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to look [default: the backup dir].",
)
@format_option
@clean_errors
def list_(root: Path | None, fmt: str) -> None:
    """Archives, newest first, with their manifest's summary."""
    rows = list_backups(root or settings_or_exit().backup_path)
    emit(fmt, rows, ["created_at", "kind", "bytes", "item_total", "schema_version", "path"])


@backup.command("schedule")
@click.option("--daily", "cadence", flag_value="daily", help="One backup a day.")
@click.option("--weekly", "cadence", flag_value="weekly", help="One backup a week.")
@click.option(
    "--retain",
    type=click.IntRange(min=0),
    required=True,
    help="Archives kept for this cadence (0 removes it).",
)
@format_option
@clean_errors
def schedule(cadence: str | None, retain: int, fmt: str) -> None:
    """Persist a schedule; `atlas services` takes due backups and prunes to the newest N."""
    if cadence is None:
        raise click.UsageError("give --daily or --weekly")
    result = set_schedule(settings_or_exit(), cadence, retain)
    emit(fmt, {"schedule": result}) if fmt == "json" else emit(
        fmt, [{"cadence": k, **v} for k, v in result.items()]
    )
