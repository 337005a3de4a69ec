"""Storage backends behind one protocol (`Store`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atlas.settings import Settings
from atlas.store.base import Store
from atlas.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from atlas.store.postgres import PostgresStore

    AnyStore = SQLiteStore | PostgresStore


def open_store(settings: Settings, *, migrate: bool) -> SQLiteStore:
    """Open the SQLite store the settings name.

    `migrate=True` creates and migrates the database: only the processes that own it (`atlas up`,
    `core`, `api`) and `atlas-ops database migrate` do. `migrate=False` opens an existing database
    at the current schema and raises DatabaseNotReady otherwise, so a mistyped ATLAS_DATA_DIR is
    an error instead of a new empty database. Keyword-only and required: every caller decides.
    Raises ConfigError for a postgresql:// URL: callers that still need SQLiteStore's whole
    surface use this; those on the backend-neutral surface use `open_backend` (issue 17).
    """
    return SQLiteStore(
        settings.sqlite_path,
        synchronous=settings.db_synchronous,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        migrate=migrate,
    )


def open_backend(settings: Settings, *, migrate: bool) -> AnyStore:
    """Open the store ATLAS_DATABASE_URL names: PostgreSQL for postgresql://, else SQLite.

    `migrate` as for `open_store`. Raises StoreError when PostgreSQL cannot be reached,
    DatabaseNotReady when its schema is not this Atlas's (without `migrate`).
    """
    if settings.database_backend == "postgresql":
        # Imported here: psycopg is loaded only by processes that use PostgreSQL.
        from atlas.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, pool_size=settings.db_pool_size, migrate=migrate)
    return open_store(settings, migrate=migrate)


__all__ = ["SQLiteStore", "Store", "open_backend", "open_store"]
