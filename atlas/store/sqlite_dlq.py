"""The dead-letter queue on the SQLite store (mixed into SQLiteStore): atlas.store.dlq in SQLite's
dialect, a group's first ids gathered by group_concat."""

from __future__ import annotations

from typing import Any

from atlas.store import dlq
from atlas.store.dlq import DLQStore
from atlas.store.models import DLQFilter
from atlas.store.sqlite_connection import SQLITE


def dlq_list_query(flt: DLQFilter, after: str | None = None) -> tuple[str, dict[str, Any]]:
    """The DLQ listing statement and its parameters (`:limit` still to bind), in id order after `after`."""
    return dlq.dlq_list_query(flt, SQLITE, after)


def dlq_groups_query(flt: DLQFilter) -> tuple[str, dict[str, Any]]:
    """atlas.store.dlq.dlq_groups_query with a group's first ids as group_concat's text."""
    return dlq.dlq_groups_query(flt, SQLITE, lambda select: f"(SELECT group_concat(id) FROM ({select}))")


class SQLiteDLQ(DLQStore):
    def _dlq_groups_query(self, flt: DLQFilter) -> tuple[str, dict[str, Any]]:
        return dlq_groups_query(flt)

    def _sample_ids(self, value: Any) -> list[str]:
        return (value or "").split(",")
