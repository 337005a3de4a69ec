"""Load named SQL from a .sql file: `-- name: x` starts query x.

Each query is a NamedSQL: the text itself (drivers take it as the str it is) plus its name and the
histogram child it is timed into. The backends' connections (TimedConnection here, the PostgreSQL
TimedCursor) time a statement only when it is a NamedSQL: one perf_counter pair and one observe on
a child bound when the file was loaded, nothing for PRAGMAs, BEGIN/COMMIT or assembled statements.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from time import perf_counter
from typing import Any

from atlas.observability.metrics import QUERY_DURATION

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class NamedSQL(str):
    """One named query's text; `format` keeps the name (an IN list's placeholders are filled in)."""

    name: str
    observe: Callable[[float], None]

    def __new__(cls, text: str, name: str) -> NamedSQL:
        sql = super().__new__(cls, text)
        sql.name = name
        sql.observe = sql._bind
        return sql

    def _bind(self, seconds: float) -> None:
        # The child is made on first use, so /metrics carries only the queries this process ran;
        # then it replaces this method (two threads binding at once get the same child).
        self.observe = QUERY_DURATION.labels(self.name).observe
        self.observe(seconds)

    def format(self, *args: Any, **kwargs: Any) -> NamedSQL:
        return NamedSQL(str.format(self, *args, **kwargs), self.name)


def parse_queries(text: str) -> dict[str, NamedSQL]:
    parts = _NAME.split(text)
    queries: dict[str, NamedSQL] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = NamedSQL("\n".join(lines).strip().rstrip(";"), name)
    return queries


@cache
def load_queries(package: str, resource: str) -> dict[str, NamedSQL]:
    return parse_queries(files(package).joinpath(resource).read_text(encoding="utf-8"))


class TimedConnection(sqlite3.Connection):
    """A SQLite connection that times named queries (`sqlite3.connect(..., factory=...)`).

    What is timed is the driver's execute: for a SELECT that is the statement up to its first row
    (sorting and aggregation included); rows fetched afterwards are not, which for the store's
    queries (keyed lookups, counts, LIMITed pages) is the small part.
    """

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if type(sql) is not NamedSQL:
            return super().execute(sql, parameters)
        start = perf_counter()
        try:
            return super().execute(sql, parameters)
        finally:
            sql.observe(perf_counter() - start)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        if type(sql) is not NamedSQL:
            return super().executemany(sql, parameters)
        start = perf_counter()
        try:
            return super().executemany(sql, parameters)
        finally:
            sql.observe(perf_counter() - start)
