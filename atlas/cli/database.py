"""`atlas-ops database`: the one CLI command that creates or migrates the database.

Every other atlas-ops command opens the database as it is (`open_store(..., migrate=False)`): a
missing database or an older schema is an error that points here.
"""

from __future__ import annotations

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.store import describe_database, open_store


@click.group()
def database() -> None:
    """The database: create or migrate it."""


@database.command("migrate")
@format_option
@clean_errors
def database_migrate(fmt: str) -> None:
    """Create the database ATLAS_DATA_DIR / ATLAS_DATABASE_URL names, or bring it to this schema."""
    settings = settings_or_exit()
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
