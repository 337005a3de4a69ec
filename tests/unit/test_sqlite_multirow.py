"""Multi-row INSERTs in place of executemany (atlas.store.sqlite_items.insert_rows; issue 18)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from atlas.store import sqlite_items
from atlas.store.queries import NamedSQL, QueryTimings, TimedConnection
from atlas.store.sqlite_items import insert_named, insert_rows


def _conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, factory=TimedConnection)
    conn.timings = QueryTimings()
    conn.execute("CREATE TABLE t (k TEXT UNIQUE, a, b, c)")
    return conn


@pytest.mark.parametrize("count", [0, 1, 3, 512, 1000])
def test_every_row_goes_in_once_in_order_whatever_the_count(tmp_path: Path, count: int) -> None:
    conn = _conn(tmp_path / "t.db")
    sql = NamedSQL("INSERT INTO t (k, a, b, c) VALUES (?1, ?2, ?3, ?2) ON CONFLICT (k) DO NOTHING", "ins")
    rows = [(f"k{i}", i, f"b{i}") for i in range(count)]
    insert_rows(conn, sql, rows + rows[:2])  # repeats: the conflict clause still applies
    assert conn.execute("SELECT k, a, b, c FROM t ORDER BY rowid").fetchall() == [
        (k, a, b, a) for k, a, b in rows
    ]


def test_named_rows_and_the_parameter_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_items, "MAX_PARAMETERS", 999)  # SQLite before 3.32
    conn = _conn(tmp_path / "t.db")
    sql = NamedSQL("INSERT INTO t (k, a, b, c) VALUES (:k, :a, :b, 'x')", "named")
    assert sqlite_items._most_rows(sql.positional()[0]) == 256  # type: ignore[index]
    insert_named(conn, sql, [{"k": f"k{i}", "a": i, "b": None, "extra": 1} for i in range(700)])
    assert conn.execute("SELECT count(*), sum(a), max(c) FROM t").fetchone() == (700, sum(range(700)), "x")
    with pytest.raises(ValueError, match="plain VALUES row"):
        insert_rows(conn, NamedSQL("INSERT INTO t (k) VALUES ((SELECT ?1))", "nested"), [("z",)])


def test_none_binds_as_null_through_the_registered_adapter(tmp_path: Path) -> None:
    """The store registers an adapter for None (atlas.store.sqlite_connection: the module's lookup
    for an adapter cost ~0.6 us a None bound); a None must still go in as NULL in every form of
    binding, and the other values beside it keep their types."""
    import atlas.store.sqlite_connection as connection

    adapter = sqlite3.adapters.get((type(None), sqlite3.PrepareProtocol))
    assert adapter is not None and adapter(None) is None
    assert connection._NULL == {}  # its `get` answers None for None only while it stays empty
    conn = _conn(tmp_path / "t.db")
    conn.executemany("INSERT INTO t (k, a, b, c) VALUES (?, ?, ?, ?)", [("p", None, None, 1)])
    conn.executemany(
        "INSERT INTO t (k, a, b, c) VALUES (:k, :a, :b, :c)", [{"k": "n", "a": None, "b": 2, "c": None}]
    )
    conn.execute("INSERT INTO t (k, a, b, c) VALUES (?, ?, ?, ?)", ("o", None, "", 0))
    assert conn.execute("SELECT k, typeof(a), typeof(b), typeof(c) FROM t ORDER BY k").fetchall() == [
        ("n", "null", "integer", "null"),
        ("o", "null", "text", "integer"),
        ("p", "null", "null", "integer"),
    ]
