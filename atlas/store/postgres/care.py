"""Database care on PostgreSQL for `atlas-ops system check --database`, `database optimize` and
`database vacuum` (mixed into PostgresStore through PgOpsStore).

What is checked, where SQLite runs PRAGMA integrity_check:
- every B-tree index of the schema is valid and ready (pg_index: a failed CREATE INDEX
  CONCURRENTLY leaves one the planner never uses);
- with the `amcheck` extension installed (Debian's postgresql ships it; an operator runs
  `CREATE EXTENSION amcheck` once, as a superuser: a check never installs anything),
  bt_index_check on each of them, which reads the index and verifies its ordering invariants.
Heap pages are checked by the server itself as they are read (data checksums when the cluster
has them); nothing more is claimed.

Query plans: each hot query is planned (EXPLAIN (FORMAT JSON), never run) with enable_seqscan off
for that transaction. On tiny tables the planner rightly prefers a sequential scan, so a plan
taken as-is would flag every fresh database; with sequential scans disabled it still picks one
only when no index can serve the query, which is the fault worth reporting. An index walked
without an index condition over a whole table (a non-partial index read end to end for its order)
is flagged too, as on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import psycopg

from atlas.errors import StoreError
from atlas.store.dlq import dlq_list_query
from atlas.store.models import DLQFilter, PlanStep
from atlas.store.postgres.connection import Conn
from atlas.store.postgres.content import C, Q
from atlas.store.postgres.dialect import POSTGRES
from atlas.store.queries import load_queries

K = load_queries("atlas.store.postgres", "care.sql")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _step(node: dict[str, Any], partial: set[str]) -> PlanStep:
    kind = str(node.get("Node Type", "?"))
    detail = kind
    if "Index Name" in node:
        detail += f" using {node['Index Name']}"
    if "Relation Name" in node:
        detail += f" on {node['Relation Name']}"
    for key in ("Index Cond", "Recheck Cond", "Filter"):
        if key in node:
            detail += f" ({key}: {node[key]})"
    full = kind == "Seq Scan" or (
        kind in ("Index Scan", "Index Only Scan")
        and "Index Cond" not in node
        and node.get("Index Name") not in partial
    )
    return PlanStep(detail, full)


class PgCare:
    if TYPE_CHECKING:
        url: str

        def _read(self) -> AbstractContextManager[Conn]: ...

    def hot_queries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, SQL, sample parameters) of the statements the API and engine run most, in the
        texts the store runs, so a plan shown is the plan used."""
        dlq_sql, dlq_params = dlq_list_query(DLQFilter(), POSTGRES)
        return [
            ("claim", Q["claim"], {"owner": "o", "token": "t", "until": 0.0, "now": 0.0, "limit": 1}),
            ("enqueue idempotency lookup", Q["items_by_key"], {"keys": ["k"]}),
            ("search", C["search"], {"query": "x", "after_rank": None, "after_seq": 0, "limit": 1}),
            ("dlq list", dlq_sql, {**dlq_params, "limit": 1}),
        ]

    def query_plans(self) -> list[tuple[str, list[PlanStep]]]:
        plans = []
        with self._read() as conn:
            conn.execute("SET LOCAL enable_seqscan = off")
            partial = {
                str(r["name"])
                for r in conn.execute(
                    "SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE i.indpred IS NOT NULL"
                )
            }
            # A client-side cursor: parameters are inlined, so EXPLAIN plans with their values.
            cur = psycopg.ClientCursor(conn)
            for name, sql, params in self.hot_queries():
                if name == "claim":  # as the store runs it (queries.sql: claim_in_due_order)
                    cur.execute("SAVEPOINT claim")
                    cur.execute(Q["claim_in_due_order"])
                cur.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                row = cur.fetchone()
                if name == "claim":
                    cur.execute("ROLLBACK TO SAVEPOINT claim")  # the settings end with it
                doc = row["QUERY PLAN"] if row is not None else []
                doc = json.loads(doc) if isinstance(doc, str) else doc
                steps = [_step(n, partial) for n in _nodes(doc[0]["Plan"])] if doc else []
                plans.append((name, steps))
        return plans

    def page_facts(self) -> dict[str, int]:
        """page_size (the block size), page_count (this schema's tables, indexes and TOAST) and
        freelist_count: the pages dead rows hold by the statistics' estimate (each table's bytes
        times its dead share), which VACUUM makes reusable."""
        with self._read() as conn:
            block = int(_one(conn, K["block_size"]))
            rels = conn.execute(K["relations"]).fetchall()
        total = sum(int(r["total_bytes"]) for r in rels)
        dead = 0.0
        for r in rels:
            rows = int(r["live_rows"]) + int(r["dead_rows"])
            if rows:
                dead += int(r["table_bytes"]) * int(r["dead_rows"]) / rows
        return {"page_size": block, "page_count": total // block, "freelist_count": int(dead) // block}

    def relation_facts(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute(K["relations"])]

    def integrity_check_name(self) -> str:
        with self._read() as conn:
            amcheck = int(_one(conn, K["amcheck_installed"])) > 0
        if amcheck:
            return "every B-tree index valid (pg_index) and verified by amcheck bt_index_check"
        return (
            "every B-tree index valid (pg_index); amcheck is not installed"
            " (CREATE EXTENSION amcheck, as a superuser, adds bt_index_check)"
        )

    def integrity_problems(self) -> list[str]:
        problems: list[str] = []
        with self._read() as conn:
            amcheck = int(_one(conn, K["amcheck_installed"])) > 0
            indexes = conn.execute(K["btree_indexes"]).fetchall()
        for ix in indexes:
            if not ix["valid"]:
                problems.append(f"index {ix['name']} is not valid (rebuild it: REINDEX INDEX {ix['name']})")
            elif amcheck:
                try:
                    with self._read() as conn:
                        conn.execute(K["bt_index_check"], {"oid": ix["oid"]})
                except StoreError as exc:
                    problems.append(f"index {ix['name']}: {exc.__cause__ or exc}")
        return problems[:20]

    def optimize(self) -> dict[str, int]:
        """ANALYZE this schema's tables: fresh planner statistics (safe while Atlas runs; the
        server checkpoints its WAL on its own)."""
        with self._read() as conn:
            tables = [str(r["name"]) for r in conn.execute(K["relations"])]
            for table in tables:
                conn.execute(psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(table)))
        return {"tables_analyzed": len(tables)}

    def vacuum(self, *, reserve_bytes: int) -> dict[str, int]:
        """VACUUM (ANALYZE) every table of the schema; bytes before and after (all relations,
        indexes and TOAST included) and what was given back.

        A plain VACUUM needs no room on disk (unlike SQLite's, or VACUUM FULL, which rewrite
        tables), and takes no lock writers wait on: `reserve_bytes` is not needed here. It makes
        dead rows' space reusable and returns only trailing empty pages to the filesystem, so
        bytes_reclaimed is often small; dead_rows_removed says what it freed for reuse.
        """
        with self._read() as conn:
            before = conn.execute(K["relations"]).fetchall()
        try:
            # VACUUM cannot run in a transaction block: its own autocommit connection.
            with psycopg.connect(self.url, autocommit=True) as conn:
                for r in before:
                    conn.execute(
                        psycopg.sql.SQL("VACUUM (ANALYZE) {}").format(psycopg.sql.Identifier(str(r["name"])))
                    )
        except psycopg.Error as exc:
            raise StoreError(f"vacuum failed: {exc}") from exc
        with self._read() as conn:
            after = int(_one(conn, K["total_bytes"]))
        bytes_before = sum(int(r["total_bytes"]) for r in before)
        return {
            "bytes_before": bytes_before,
            "bytes_after": after,
            "bytes_reclaimed": max(0, bytes_before - after),
            "dead_rows_before": sum(int(r["dead_rows"]) for r in before),
        }


def _one(conn: Conn, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    if row is None:
        raise StoreError(f"no row from {sql!r}")
    return row["n"]
