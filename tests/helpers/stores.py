"""Backend-neutral raw SQL for tests that compare a store's kept figures with its rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from atlas.store.sqlite import SQLiteStore


def sql_rows(store: Any, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` (no parameters; the same text must suit both backends) in a transaction of its
    own, committed; the rows it returns, if any. On PostgreSQL through the store's own pool."""
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path)) as conn, conn:
            cur = conn.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    from psycopg.rows import tuple_row

    with store.db.transaction() as pg:
        pcur = pg.cursor(row_factory=tuple_row).execute(sql)  # unnamed columns stay apart
        return list(pcur.fetchall()) if pcur.description else []


def second_handle(store: Any) -> Any:
    """Another store object on the same database, as a second process would open it."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, synchronous="NORMAL", clock=store.clock)
    from atlas.store.postgres import PostgresStore

    return PostgresStore(store.url, pool_size=4, clock=store.clock)


def stats_opener(path: Path) -> Callable[[], SQLiteStore]:
    """What the exporter opens for a data dir, for a database file given directly: the store as it
    is (no migration, DatabaseNotReady when missing)."""
    return lambda: SQLiteStore(path, migrate=False)
