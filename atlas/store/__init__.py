"""Storage backends behind typed protocols (atlas.store.protocols), chosen by ATLAS_DATABASE_URL.

Nothing outside atlas/store imports a backend module, sqlite3 or psycopg, or holds SQL text
(tests/unit/test_store_seam.py checks it): callers get an `AtlasStore` from `open_store` and type
what they keep by the narrowest protocol they use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from atlas.errors import StoreError
from atlas.settings import Settings
from atlas.store.base import Store
from atlas.store.protocols import (
    AtlasStore,
    ContentStore,
    DatabaseArchive,
    FeedStore,
    KeyStore,
    KVStore,
    OpsStore,
    QueueStore,
    StatsStore,
)


def open_store(settings: Settings, *, migrate: bool) -> AtlasStore:
    """Open the store ATLAS_DATABASE_URL names: PostgreSQL for postgresql://, else SQLite.

    `migrate=True` creates and migrates the database: only the processes that own it (`atlas up`,
    `core`, `api`) and `atlas-ops database migrate` do. `migrate=False` opens an existing database
    at the current schema and raises DatabaseNotReady otherwise, so a mistyped ATLAS_DATA_DIR is
    an error instead of a new empty database. Keyword-only and required: every caller decides.
    Raises StoreError when PostgreSQL cannot be reached.
    """
    if settings.database_backend == "postgresql":
        # Imported here: psycopg is loaded only by processes that use PostgreSQL.
        from atlas.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, pool_size=settings.db_pool_size, migrate=migrate)
    from atlas.store.sqlite import SQLiteStore

    return SQLiteStore(
        settings.sqlite_path,
        synchronous=settings.db_synchronous,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        migrate=migrate,
    )


def shipped_migrations(backend: str = "sqlite") -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration this Atlas ships for `backend`, in order."""
    if backend == "postgresql":
        from atlas.store.postgres.connection import migrations as pg_migrations

        return pg_migrations()
    from atlas.store.sqlite_connection import migrations

    return migrations()


def local_database_dir(settings: Settings) -> Path:
    """The local directory whose free space the database needs: the SQLite file's, or the data
    directory where the database is a server elsewhere (PostgreSQL)."""
    if settings.database_backend == "postgresql":
        return settings.data_dir
    return settings.sqlite_path.parent


def describe_database(settings: Settings) -> str:
    """The database for messages and reports: the SQLite file, or the URL without its password."""
    if settings.database_backend == "postgresql":
        from atlas.store.postgres.connection import redact

        return redact(settings.database_url)
    return str(settings.sqlite_path)


def open_archive(settings: Settings | None = None, *, backend: str | None = None) -> DatabaseArchive:
    """The backup files of the database the settings name (no store is opened); without settings,
    a reader of archived database files of `backend` only (`backup verify` of an archive on its
    own: the backend its manifest names). Raises StoreError for a backend it does not know."""
    backend = backend or (settings.database_backend if settings is not None else "sqlite")
    if backend == "postgresql":
        from atlas.store.postgres.archive import PgArchive

        if settings is None or settings.database_backend != "postgresql":
            return PgArchive(None, None)
        return PgArchive(settings.database_url, settings.data_dir)
    if backend != "sqlite":
        raise StoreError(f"unknown database backend {backend!r} (sqlite or postgresql)")
    from atlas.store.sqlite_maint import SQLiteArchive

    return SQLiteArchive(None if settings is None else settings.sqlite_path)


if TYPE_CHECKING:
    # mypy proves both backends satisfy the whole seam: a missing or mistyped method fails lint.
    from atlas.store.postgres import PostgresStore
    from atlas.store.postgres.archive import PgArchive
    from atlas.store.sqlite import SQLiteStore
    from atlas.store.sqlite_maint import SQLiteArchive

    _sqlite: type[AtlasStore] = SQLiteStore
    _postgres: type[AtlasStore] = PostgresStore
    _archive: type[DatabaseArchive] = SQLiteArchive
    _pg_archive: type[DatabaseArchive] = PgArchive


__all__ = [
    "AtlasStore",
    "ContentStore",
    "DatabaseArchive",
    "FeedStore",
    "KVStore",
    "KeyStore",
    "OpsStore",
    "QueueStore",
    "StatsStore",
    "Store",
    "describe_database",
    "local_database_dir",
    "open_archive",
    "open_store",
    "shipped_migrations",
]
