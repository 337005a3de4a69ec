"""Named SQL bound as numbered parameters (atlas.store.queries: sqlite3 looks a dict's names up
anew for every row; issue 18), with what sqlite3 would have done otherwise."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from atlas.store.itemrows import CLAIMED_COLUMNS
from atlas.store.queries import NamedSQL, QueryTimings, TimedConnection, load_queries
from atlas.store.sqlite import SQLiteStore


def test_names_become_numbered_parameters_outside_strings_quoted_names_and_comments() -> None:
    sql = NamedSQL("SELECT ':s', \"a:b\" -- :c\n FROM t /* :z */ WHERE a = :a AND b = :b OR c = :a", "q")
    numbered = sql.positional()
    assert numbered is not None
    text, values = numbered
    assert text == "SELECT ':s', \"a:b\" -- :c\n FROM t /* :z */ WHERE a = ?1 AND b = ?2 OR c = ?1"
    assert values({"b": 2, "a": 1, "extra": 3}) == (1, 2)
    single = NamedSQL("SELECT :only", "q").positional()
    assert single is not None and single[1]({"only": 5}) == (5,)


@pytest.mark.parametrize("text", ["SELECT ?", "SELECT :a, ?", "SELECT :a, @b", "SELECT $b", "SELECT 1"])
def test_other_kinds_of_parameters_or_none_are_left_to_sqlite3(text: str) -> None:
    assert NamedSQL(text, "q").positional() is None


def test_every_shipped_sqlite_query_compiles_in_its_numbered_form(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db")  # migrated: every table the queries name
    conn = sqlite3.connect(tmp_path / "atlas.db")
    compiled = 0
    for resource in ("queries.sql", "content.sql", "ops.sql", "stats.sql"):
        for sql in load_queries("atlas.store", resource).values():
            numbered = sql.positional()
            if numbered is None or "{" in sql:  # no names, or an IN list filled in later
                continue
            names = len(set(re.findall(r":([A-Za-z_]\w*)", re.sub(r"'[^']*'", "", sql))))
            conn.execute("EXPLAIN " + numbered[0], (None,) * names).fetchall()
            compiled += 1
    store.close()
    assert compiled > 40


def test_a_timed_connection_binds_dicts_as_sqlite3_does(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db", factory=TimedConnection)
    conn.timings = QueryTimings()
    conn.execute("CREATE TABLE t (a, b, c)")
    insert = NamedSQL("INSERT INTO t VALUES (:a, :b, :a || ':' || :b)", "ins")
    conn.executemany(insert, [{"a": "x", "b": 1}, {"b": 2, "a": "y"}])
    conn.execute(insert, {"a": "z", "b": None})
    conn.executemany(insert, [])
    conn.executemany(insert, [("p", "q")])  # a sequence: bound by position, as before
    select = NamedSQL("SELECT a, b, c FROM t WHERE a >= :from ORDER BY a", "sel")
    assert conn.execute(select, {"from": "p"}).fetchall() == [
        ("p", "q", "p:q"), ("x", 1, "x:1"), ("y", 2, "y:2"), ("z", None, None),
    ]  # fmt: skip
    with pytest.raises(sqlite3.ProgrammingError, match=":b"):
        conn.execute(insert, {"a": "w"})
    with pytest.raises(sqlite3.ProgrammingError, match=":b"):
        conn.executemany(insert, [{"a": "v", "b": 1}, {"a": "w"}])
    observed = {s.labels["query"] for m in conn.timings.histogram.collect() for s in m.samples}
    assert {"ins", "sel"} <= observed  # still timed


def test_claim_settling_reads_the_due_querys_columns_in_the_order_it_unpacks(tmp_path: Path) -> None:
    # itemrows.claimed_from_tuple takes the due query's rows by position, then the rowid.
    store = SQLiteStore(tmp_path / "atlas.db")
    conn = sqlite3.connect(tmp_path / "atlas.db")
    params = {"now": 0.0, "limit": 1, "skip": "[]"}
    due = conn.execute(load_queries("atlas.store", "queries.sql")["due"], params)
    assert tuple(d[0] for d in due.description) == (*CLAIMED_COLUMNS, "rowid")
    store.close()
