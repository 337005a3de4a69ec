"""Storage backends behind one protocol (`Store`)."""

from __future__ import annotations

from atlas.settings import Settings
from atlas.store.base import Store
from atlas.store.sqlite import SQLiteStore


def open_store(settings: Settings, *, migrate: bool) -> SQLiteStore:
    """Open the store the settings name.

    `migrate=True` creates and migrates the database: only the processes that own it (`atlas up`,
    `core`, `api`) and `atlas-ops database migrate` do. `migrate=False` opens an existing database
    at the current schema and raises DatabaseNotReady otherwise, so a mistyped ATLAS_DATA_DIR is
    an error instead of a new empty database. Keyword-only and required: every caller decides.
    """
    return SQLiteStore(
        settings.sqlite_path,
        synchronous=settings.db_synchronous,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        migrate=migrate,
    )


__all__ = ["SQLiteStore", "Store", "open_store"]
