"""Load named SQL from a .sql file: `-- name: x` starts query x.

Each query is a NamedSQL: the text itself (drivers take it as the str it is) plus its name. A
store keeps a QueryTimings (its atlas_db_query_duration_seconds histogram) and its connections
(TimedConnection here, the PostgreSQL TimedCursor) time a statement only when it is a NamedSQL: one
perf_counter pair and one observe on the name's child, made on first use; PRAGMAs, BEGIN/COMMIT and
assembled statements are not timed. Per store, not per process: `atlas up` runs the API's and the
engine's stores in one process, each exported by its own /metrics, and neither may count the other's.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from functools import cache, partial
from importlib.resources import files
from operator import itemgetter
from time import perf_counter
from typing import Any

from atlas.observability.metrics import build

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


class NamedSQL(str):
    """One named query's text; `format` keeps the name (an IN list's placeholders are filled in)."""

    name: str
    _positional: tuple[str, Callable[[Any], tuple[Any, ...]]] | bool | None = False  # not yet made

    def __new__(cls, text: str, name: str) -> NamedSQL:
        sql = super().__new__(cls, text)
        sql.name = name
        return sql

    def format(self, *args: Any, **kwargs: Any) -> NamedSQL:
        return NamedSQL(str.format(self, *args, **kwargs), self.name)

    def positional(self) -> tuple[str, Callable[[Any], tuple[Any, ...]]] | None:
        """(the text with each `:name` as a numbered `?N`, what turns a dict of parameters into
        their tuple), or None for a text with no named parameter or with `?` ones of its own.

        Python's sqlite3 binds a dict by looking each name up anew for every row (a string made
        from the statement's parameter name, hashed, looked up): the transition's 18 parameters
        cost more than SQLite's own update of the row did (issue 18: 39 -> 22 us a row, measured).
        One itemgetter call in C builds the tuple instead."""
        if self._positional is False:
            self._positional = _numbered(self)
        return self._positional  # type: ignore[return-value]


# A statement's pieces that may hold a colon that is no parameter: strings, quoted names, comments.
_SQL_TOKEN = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?|[@$][A-Za-z_]|:([A-Za-z_]\w*)", re.DOTALL
)


def _numbered(sql: str) -> tuple[str, Callable[[Any], tuple[Any, ...]]] | None:
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            if match.group(0)[0] in "?@$":
                raise ValueError("parameters of another kind: left to sqlite3")
            return match.group(0)
        return f"?{names.setdefault(name, len(names) + 1)}"

    try:
        text = _SQL_TOKEN.sub(number, sql)
    except ValueError:
        return None
    if not names:
        return None
    ordered = list(names)
    if len(ordered) == 1:
        single = itemgetter(ordered[0])
        return text, lambda values: (single(values),)
    return text, itemgetter(*ordered)


def _record(sink: list[tuple[str, float]], name: str, seconds: float) -> None:
    sink.append((name, seconds))


class QueryTimings(dict[str, Callable[[float], None]]):
    """One store's named-query durations: query name -> its histogram child's `observe`, made on
    first use (so /metrics carries only the queries that ran). The histogram is in no registry:
    whoever exports the store registers `histogram` (atlas.observability.metrics.watch_store_locks)."""

    def __init__(self) -> None:
        super().__init__()
        self.histogram = build(None, "atlas_db_query_duration_seconds")

    def record_to(self, sink: list[tuple[str, float]]) -> None:
        """From now on append (name, seconds) to `sink` instead of observing: a process that
        commits for another (atlas.api.commitproc) hands its timings to the one exporting them."""
        self.clear()
        self.sink = sink

    def __missing__(self, name: str) -> Callable[[float], None]:
        sink: list[tuple[str, float]] | None = getattr(self, "sink", None)
        if sink is not None:
            self[name] = recorder = partial(_record, sink, name)
            return recorder
        # Two threads missing at once get the same child from labels(); the second store wins.
        observe: Callable[[float], None] = self.histogram.labels(name).observe
        self[name] = observe
        return observe


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


def load_migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration `package` ships in its `migrations` folder
    (NNNN_name.sql), in version order."""
    found = []
    for entry in files(package).joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


class TimedConnection(sqlite3.Connection):
    """A SQLite connection that times named queries into `timings` (`sqlite3.connect(...,
    factory=TimedConnection)`, then set `timings`: connect passes no extra arguments).

    What is timed is the driver's execute: for a SELECT that is the statement up to its first row
    (sorting and aggregation included); rows fetched afterwards are not, which for the store's
    queries (keyed lookups, counts, LIMITed pages) is the small part. A failed statement (e.g. busy
    past the timeout) is observed too: that time was spent.
    """

    timings: QueryTimings

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if type(sql) is not NamedSQL:
            return super().execute(sql, parameters)
        start = perf_counter()
        try:
            if type(parameters) is dict and (numbered := sql.positional()) is not None:
                try:
                    return super().execute(numbered[0], numbered[1](parameters))
                except KeyError as exc:
                    raise _unbound(exc) from None
            return super().execute(sql, parameters)
        finally:
            self.timings[sql.name](perf_counter() - start)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        if type(sql) is not NamedSQL:
            return super().executemany(sql, parameters)
        start = perf_counter()
        try:
            if type(parameters) is list and parameters and type(parameters[0]) is dict:
                numbered = sql.positional()
                if numbered is not None:
                    try:
                        return super().executemany(numbered[0], map(numbered[1], parameters))
                    except KeyError as exc:
                        raise _unbound(exc) from None
            return super().executemany(sql, parameters)
        finally:
            self.timings[sql.name](perf_counter() - start)


def _unbound(missing: KeyError) -> sqlite3.ProgrammingError:
    """What sqlite3 raises for a named parameter the dict lacks."""
    return sqlite3.ProgrammingError(f"You did not supply a value for binding parameter :{missing.args[0]}.")
