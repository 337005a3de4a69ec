"""Backend-neutral raw SQL for tests that compare a store's kept figures with its rows."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from atlas.store import SQLiteStore


def sql_rows(store: Any, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` (no parameters; the same text must suit both backends) on a connection of its
    own, committed; the rows it returns, if any."""
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path)) as conn, conn:
            cur = conn.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as pg:
        pcur = pg.execute(sql)
        return [tuple(r) for r in pcur.fetchall()] if pcur.description else []
