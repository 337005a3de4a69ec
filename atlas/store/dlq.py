"""The dead-letter queue, for both backends (mixed into the store classes): filters as WHERE
clauses, listing, grouping by error fingerprint, replay and purge. Each backend gives its dialect
(placeholders, IN lists) and, for grouping, how it gathers a group's first ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atlas.store.dialect import BackendMixin, Dialect
from atlas.store.itemrows import row_to_item
from atlas.store.models import DLQFilter, DLQGroup, Item

DLQ_SAMPLE_IDS = 5
_COLUMNS = {
    "stage": "last_error_stage",
    "error_class": "last_error_class",
    "host": "last_error_host",
    "kind": "kind",
    "source": "source",
    "reason": "dead_reason",
}


def dlq_where(flt: DLQFilter, d: Dialect) -> tuple[str, dict[str, Any]]:
    """The WHERE clause selecting the dead items `flt` names, and its parameters."""
    # Filters are optional, so the clause is assembled; every value is still a parameter.
    clauses = ["state = 'dead'"]
    params: dict[str, Any] = {}
    for attr, column in _COLUMNS.items():
        value = getattr(flt, attr)
        if value is not None:
            clauses.append(f"{column} = {d.param(attr)}")
            params[attr] = value
    if flt.dead_before is not None:
        clauses.append(f"updated_at < {d.param('dead_before')}")
        params["dead_before"] = flt.dead_before
    if flt.dead_after is not None:
        clauses.append(f"updated_at >= {d.param('dead_after')}")
        params["dead_after"] = flt.dead_after
    if flt.ids:
        clauses.append(d.in_values("id", "ids", list(flt.ids), params))
    return " AND ".join(clauses), params


def dlq_list_query(flt: DLQFilter, d: Dialect, after: str | None = None) -> tuple[str, dict[str, Any]]:
    """The DLQ listing statement and its parameters (`limit` still to bind), in id order after `after`."""
    where, params = dlq_where(flt, d)
    if after is not None:
        where += f" AND id > {d.param('after')}"
        params["after"] = after
    return f"SELECT * FROM items WHERE {where} ORDER BY id LIMIT {d.param('limit')}", params


def dlq_groups_query(
    flt: DLQFilter, d: Dialect, first_ids: Callable[[str], str]
) -> tuple[str, dict[str, Any]]:
    """The DLQ grouping statement and its parameters (`limit` still to bind): per (stage, error
    class, host), the size, time range and a sample message, largest groups first, and as `ids`
    the first DLQ_SAMPLE_IDS ids in id order, which `first_ids(select)` gathers from `select`.

    The ids come from a correlated subquery with LIMIT, run only for the groups returned: an
    aggregate over the whole group held every id of a million-item group in memory to keep five.
    """
    where, params = dlq_where(flt, d)
    same_group = (
        f"last_error_stage {d.same} g.stage AND last_error_class {d.same} g.error_class"
        f" AND last_error_host {d.same} g.host"
    )
    ids = first_ids(f"SELECT id FROM items WHERE {where} AND {same_group} ORDER BY id LIMIT {DLQ_SAMPLE_IDS}")
    # NULLS FIRST: SQLite's order, which PostgreSQL is told. The groups are limited inside `g`, so
    # the ids subquery runs for the groups returned only (not for every group, before a LIMIT).
    order = "n DESC, stage NULLS FIRST, error_class NULLS FIRST, host NULLS FIRST"
    sql = (
        f"SELECT g.*, {ids} AS ids"
        " FROM (SELECT last_error_stage AS stage, last_error_class AS error_class,"
        " last_error_host AS host, count(*) AS n, min(updated_at) AS oldest, max(updated_at) AS newest,"
        " max(last_error_message) AS sample_message"
        f" FROM items WHERE {where}"
        " GROUP BY last_error_stage, last_error_class, last_error_host"
        f" ORDER BY {order} LIMIT {d.param('limit')}) AS g"
        f" ORDER BY {order}"
    )
    return sql, params


class DLQStore(BackendMixin):
    def _dlq_groups_query(self, flt: DLQFilter) -> tuple[str, dict[str, Any]]:
        """dlq_groups_query in the backend's way of gathering a group's first ids."""
        raise NotImplementedError

    def _sample_ids(self, value: Any) -> list[str]:
        """A group's `ids` column as a list."""
        raise NotImplementedError

    def dlq_list(self, flt: DLQFilter, limit: int = 100, after: str | None = None) -> list[Item]:
        sql, params = dlq_list_query(flt, self.dialect, after)
        with self._read() as conn:
            rows = conn.execute(sql, {**params, "limit": limit}).fetchall()
        return [row_to_item(r) for r in rows]

    def dlq_groups(self, flt: DLQFilter, limit: int = 50) -> list[DLQGroup]:
        sql, params = self._dlq_groups_query(flt)
        with self._read() as conn:
            rows = conn.execute(sql, {**params, "limit": limit}).fetchall()
        return [
            DLQGroup(
                stage=r["stage"],
                error_class=r["error_class"],
                host=r["host"],
                count=int(r["n"]),
                oldest=r["oldest"],
                newest=r["newest"],
                sample_ids=self._sample_ids(r["ids"])[:DLQ_SAMPLE_IDS],
                sample_message=r["sample_message"],
            )
            for r in rows
        ]

    def dlq_replay(self, flt: DLQFilter, dry_run: bool = False) -> int:
        """Requeue matching dead items with fresh attempt counters; their history is kept."""
        where, params = dlq_where(flt, self.dialect)
        now, p = self.clock(), self.dialect.param
        with self._write() as conn:
            if dry_run:
                return _count(conn, where, params)
            conn.execute(
                "INSERT INTO attempts (item_id, attempt, at, outcome, message)"
                f" SELECT id, attempts, {p('now')}, 'replayed', 'replayed from the DLQ' FROM items"
                f" WHERE {where} ORDER BY id",
                {**params, "now": now},
            )
            n = int(
                conn.execute(
                    "UPDATE items SET state = 'queued', attempts = 0, deaths = 0, lease_expiries = 0,"
                    f" isolate = 0, next_attempt_at = {p('now')}, dead_reason = NULL, done_at = NULL,"
                    f" updated_at = {p('now')} WHERE {where}",
                    {**params, "now": now},
                ).rowcount
            )
            if n:
                self._wake(conn)
            return n

    def dlq_purge(self, flt: DLQFilter, dry_run: bool = False) -> int:
        """Delete matching dead items and their history."""
        where, params = dlq_where(flt, self.dialect)
        with self._write() as conn:
            if dry_run:
                return _count(conn, where, params)
            conn.execute(
                f"DELETE FROM attempts WHERE item_id IN (SELECT id FROM items WHERE {where})", params
            )
            return int(conn.execute(f"DELETE FROM items WHERE {where}", params).rowcount)


def _count(conn: Any, where: str, params: dict[str, Any]) -> int:
    return int(conn.execute(f"SELECT count(*) AS n FROM items WHERE {where}", params).fetchone()["n"])
