"""Storage backends behind one protocol (`Store`)."""

from __future__ import annotations

from atlas.settings import Settings
from atlas.store.base import Store
from atlas.store.sqlite import SQLiteStore


def open_store(settings: Settings) -> SQLiteStore:
    """Open (and migrate) the store the settings name."""
    return SQLiteStore(
        settings.sqlite_path,
        synchronous=settings.db_synchronous,
        busy_timeout_ms=settings.db_busy_timeout_ms,
    )


__all__ = ["SQLiteStore", "Store", "open_store"]
