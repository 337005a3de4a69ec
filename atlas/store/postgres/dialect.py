"""PostgreSQL's SQL dialect for the backend-neutral store logic (atlas.store.dialect)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atlas.store.dialect import Dialect


def _in_values(column: str, name: str, values: Sequence[Any], params: dict[str, Any]) -> str:
    params[name] = list(values)  # one array parameter, whatever its length
    return f"{column} = ANY(%({name})s)"


def _executemany(conn: Any, sql: str, rows: Sequence[Any]) -> None:
    if rows:  # psycopg sends nothing for no rows, but a cursor is not needed either
        conn.cursor().executemany(sql, rows)


POSTGRES = Dialect(
    param=lambda name: f"%({name})s",
    in_values=_in_values,
    executemany=_executemany,
    same="IS NOT DISTINCT FROM",
)
