"""`atlas-ops database`: the one CLI command that creates or migrates the database.

Every other atlas-ops command opens the database as it is (`open_store(..., migrate=False)`): a
missing database or an older schema is an error that points here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from atlas.cli.common import clean_errors, emit, error_lines, format_option, settings_or_exit
from atlas.errors import TransferRefused
from atlas.settings import Settings
from atlas.store import describe_database, open_store


@click.group()
def database() -> None:
    """The database: create or migrate it."""


@database.command("migrate")
@click.option(
    "--to",
    "to_url",
    metavar="postgresql://...",
    default=None,
    help="Copy the configured SQLite store into this empty PostgreSQL database and verify the copy.",
)
@click.option("--force", is_flag=True, help="With --to: replace what the target database holds.")
@format_option
@clean_errors
def database_migrate(to_url: str | None, force: bool, fmt: str) -> None:
    """Create the database ATLAS_DATA_DIR / ATLAS_DATABASE_URL names, or bring it to this schema.

    With --to: copy the SQLite store (it may be running: one consistent snapshot is read) into
    PostgreSQL, verify counts and checksums, and print the setting to change. Exit 0 verified,
    1 mismatch or failed copy, 2 bad input (no source, unreachable or non-empty target).
    """
    settings = settings_or_exit()
    if force and to_url is None:
        error_lines(TransferRefused("--force: only with --to"))
        sys.exit(2)
    if to_url is not None:
        _migrate_to(settings, to_url, force=force, fmt=fmt)
        return
    store = open_store(settings, migrate=True)
    try:
        version = store.schema_version()
        report = {
            "path": describe_database(settings),
            # Every migration from the first applied now: the database was new (or empty).
            "created": store.migrations_applied > 0 and store.migrations_applied == version,
            "migrations_applied": store.migrations_applied,
            "schema_version": version,
        }
    finally:
        store.close()
    emit(fmt, report)


def _migrate_to(settings: Settings, url: str, *, force: bool, fmt: str) -> None:
    from atlas.store.outbox import outbox_file
    from atlas.store.transfer import copy_sqlite_to_postgres

    if settings.database_backend != "sqlite":
        error_lines(
            TransferRefused(f"source: the configured database is {describe_database(settings)}, not SQLite")
        )
        sys.exit(2)
    try:
        report = copy_sqlite_to_postgres(
            Path(settings.sqlite_path),
            url,
            force=force,
            progress=_progress(),
            outbox_path=outbox_file(settings),
        )
    except TransferRefused as exc:
        error_lines(exc)
        sys.exit(2)
    mismatches = report.mismatches
    summary = {
        "source": report.source,
        "target": report.target,
        "schema_version": report.schema_version,
        "leased_requeued": report.leased_requeued,
        "rows": {name: t.rows for name, t in report.tables.items()},
        "items": {f"{state}/{kind}": n for (state, kind), n in sorted(report.target_counts.items())},
        "checksums": {name: f"{t.target_checksum:064x}" for name, t in report.tables.items()},
        "verified": not mismatches,
        "mismatches": mismatches,
        "setting": f"ATLAS_DATABASE_URL={report.target}",
    }
    if fmt == "json":
        emit(fmt, summary)
    else:
        _print_table(summary)
    if mismatches:
        sys.exit(1)


def _progress() -> Callable[[str, int, int], None]:
    """Per table: a line at the start, at each further tenth, and at the end (stderr)."""
    shown: dict[str, int] = {}

    def show(table: str, done: int, total: int) -> None:
        tenth = 10 if total == 0 else done * 10 // total
        if shown.get(table, -1) < tenth:
            shown[table] = tenth
            click.echo(f"copying {table}: {done:,}/{total:,}", err=True)

    return show


def _print_table(summary: dict[str, object]) -> None:
    rows = summary["rows"]
    assert isinstance(rows, dict)
    click.echo(f"source:  {summary['source']} (schema version {summary['schema_version']})")
    click.echo(f"target:  {summary['target']}")
    for name, n in rows.items():
        click.echo(f"  {name:<18} {n:>10,} rows")
    items = summary["items"]
    assert isinstance(items, dict)
    for key, n in items.items():
        click.echo(f"  items {key:<30} {n:>10,}")
    click.echo(f"leased items copied as queued (attempts kept): {summary['leased_requeued']}")
    mismatches = summary["mismatches"]
    assert isinstance(mismatches, list)
    if mismatches:
        click.echo("VERIFY FAILED: the copy differs from the snapshot:")
        for line in mismatches:
            click.echo(f"  {line}")
        return
    click.echo("verified: rows, items per state and kind, and checksums equal on both sides")
    click.echo("to use it, set (with the password) and restart Atlas:")
    click.echo(f"  {summary['setting']}")
