"""What a backend gives the backend-neutral store logic (atlas/store/*.py that import neither
driver): its SQL dialect and its named queries. The logic itself (which rows a transition writes,
how a DLQ filter becomes a WHERE clause, keys and kv, feeds and search paging) is written once.

SQLite binds `:name` and PostgreSQL (psycopg) `%(name)s`; SQLite has no arrays, so a list of
values is a list of placeholders there and `= ANY(...)` of one array parameter on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol


class Conn(Protocol):
    """What the neutral logic uses of a connection: sqlite3.Connection and psycopg's both offer it.
    Rows are read by column name (sqlite3.Row and psycopg's dict rows both allow it)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """One backend's spelling of what the neutral statements need."""

    # The placeholder of the named parameter `name`.
    param: Callable[[str], str]
    # `column IN (values)` as a clause, its parameters put into `params` under names from `name`.
    in_values: Callable[[str, str, Sequence[Any], dict[str, Any]], str]
    # Run `sql` once per row of parameters (nothing for no rows) on the caller's transaction.
    executemany: Callable[[Any, str, Sequence[Any]], None]
    # Equality that holds for two NULLs too (DLQ groups have NULL stages, classes and hosts).
    same: str


class BackendMixin:
    """Base of the neutral mixins: what they rely on, which each store class provides."""

    if TYPE_CHECKING:
        clock: Callable[[], float]
        dialect: Dialect
        sql: Mapping[str, str]  # every named query of the backend, by name

        def _read(self) -> AbstractContextManager[Any]: ...

        def _write(self) -> AbstractContextManager[Any]: ...

    def _wake(self, conn: Any) -> None:
        """Tell waiting engines that items were queued, in `conn`'s transaction (nothing where
        engines poll)."""


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
