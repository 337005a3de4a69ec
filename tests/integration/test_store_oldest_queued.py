"""SQLite's oldest-queued read (migration 0010) stays a few rows of work however the queue looks:
a batch accepted in one millisecond, and a drain that claims thousands of items between two runs
of the lease reaper (the API's sampler reads it every second, the exporter every scrape)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from atlas.store.models import NewItem
from atlas.store.queries import load_queries
from atlas.store.sqlite import SQLiteStore

Q = load_queries("atlas.store", "queries.sql")


def _steps(path: Path) -> tuple[float, int]:
    """The oldest-queued answer and the virtual-machine steps SQLite took for it (in thousands)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    with closing(sqlite3.connect(path)) as conn:
        conn.set_progress_handler(count, 1000)
        (value,) = conn.execute(Q["oldest_queued"]).fetchone()
    return value, steps[0]


def test_a_large_batch_accepted_in_one_millisecond_is_not_read_whole(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", clock=lambda: 1_000.0)
    try:
        store.enqueue([NewItem(kind="document", payload={"content": str(i)}) for i in range(5_000)])
        value, thousands = _steps(store.path)
        assert value == 1_000.0
        # Reading all 5,000 rows of that millisecond took 45 thousand steps.
        assert thousands < 3, f"{thousands} thousand steps for one read"
    finally:
        store.close()


def test_a_claim_moves_the_walk_start_past_what_it_took(tmp_path: Path) -> None:
    now = [1_000.0]
    store = SQLiteStore(tmp_path / "atlas.db", clock=lambda: now[0])
    try:
        for _ in range(40):  # 40 milliseconds of 100 items each: the walk crosses ids in order
            store.enqueue([NewItem(kind="document", payload={"content": "x"}) for _ in range(100)])
            now[0] += 0.001
        claimed = store.claim("engine", 3_000, 60)
        assert len(claimed) == 3_000
        value, thousands = _steps(store.path)
        assert value is not None and value >= 1_000.029
        # Walking the 3,000 claimed rows from where the last enqueue left the start took 13.
        assert thousands < 3, f"{thousands} thousand steps for one read"
    finally:
        store.close()
