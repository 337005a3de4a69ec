"""WAL checkpoints run on the store's own thread, not inside a writer's commit (issue 18).

SQLite's default checkpoints inside the commit that takes the WAL past 1,000 pages; Atlas's writers
only do so past SAFETY_PAGES, and a background thread moves committed pages into the database file
soon after every write, so the fsync of the database file is off the engine's and the API's path.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from atlas.store.sqlite_checkpoint import SAFETY_PAGES, WalCheckpointer
from tests.helpers.engine import wait_for


def test_committed_pages_reach_the_database_file_while_every_writer_stays_under_its_own_threshold(
    tmp_path: Path,
) -> None:
    path = tmp_path / "atlas.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        # ~300 pages: far below the writers' own threshold (and SQLite's default of 1,000), so
        # only the checkpoint thread can have copied them out of the WAL into the file.
        for start in range(0, 300, 100):
            store.enqueue(
                [
                    NewItem(kind="document", payload={"content": f"{i} " + "x" * 1000})
                    for i in range(start, start + 100)
                ]
            )
        assert SAFETY_PAGES > 1000
        wait_for(
            lambda: path.stat().st_size >= 300 * 1000 and store.checkpointer.checkpoints >= 1,
            timeout=15,
            what="the WAL checkpointed into the file",
        )
        # Everything is still there, through a fresh connection.
        assert sum(store.counts().values()) == 300
    finally:
        checkpointer = store.checkpointer
        store.close()
    assert not checkpointer.running


def test_a_store_that_only_reads_starts_no_checkpoint_thread(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "atlas.db").close()  # migrated
    before = {t.ident for t in threading.enumerate() if t.name == "atlas-wal-checkpoint"}
    reader = SQLiteStore(tmp_path / "atlas.db", migrate=False)
    try:
        reader.counts()
        assert not reader.checkpointer.running
        now = {t.ident for t in threading.enumerate() if t.name == "atlas-wal-checkpoint"}
        assert now <= before
    finally:
        reader.close()


def test_a_store_dropped_without_close_stops_its_checkpoint_thread_and_one_closed_starts_again(
    tmp_path: Path,
) -> None:
    # Before: the thread (and its connection to the file) outlived a store dropped without close(),
    # for the life of the process: one more per such store (tests, one-shot commands, helpers).
    def threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "atlas-wal-checkpoint"}

    before = threads()
    store = SQLiteStore(tmp_path / "atlas.db")
    store.enqueue([NewItem(kind="document", payload={"content": "x"})])
    started = threads() - before
    assert started and store.checkpointer.running
    del store
    gc.collect()
    wait_for(
        lambda: not any(t.is_alive() for t in started),
        timeout=10,
        what="the dropped store's checkpoint thread to end",
    )

    # A store used again after close() checkpoints again, and close() stops that thread too.
    before = threads()
    again = SQLiteStore(tmp_path / "atlas.db")
    again.close()
    again.enqueue([NewItem(kind="document", payload={"content": "y"})])
    restarted = threads() - before
    assert restarted and again.checkpointer.running
    again.close()
    assert not any(t.is_alive() for t in restarted) and not again.checkpointer.running


def test_a_checkpoint_thread_that_failed_creates_no_file_and_a_later_write_starts_another(
    tmp_path: Path,
) -> None:
    path = tmp_path / "atlas.db"
    checkpointer = WalCheckpointer(path, interval=0.01, retry=0.0)
    try:
        checkpointer.wrote()  # no such file: the thread's connection fails (mode=rw)
        wait_for(lambda: not checkpointer.running, timeout=15, what="the failed thread to end")
        assert not path.exists()
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("CREATE TABLE t (x)")
        checkpointer.wrote()
        wait_for(lambda: checkpointer.checkpoints >= 1, timeout=15, what="a new thread's checkpoint")
        assert checkpointer.running
    finally:
        checkpointer.close()
    assert not checkpointer.running


class _CommitsDuringFirstCheckpoint(sqlite3.Connection):
    """The checkpoint thread's connection, real, but while its first checkpoint runs a writer
    commits (here: just after it, before its answer comes back), as the engine does all the time."""

    writer: sqlite3.Connection
    landed = 0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor = super().execute(sql, parameters)
        if sql.startswith("PRAGMA wal_checkpoint") and not self.landed:
            self.landed += 1
            with self.writer:
                self.writer.execute("INSERT INTO t VALUES ('committed during the checkpoint')")
        return cursor


def test_a_checkpoint_catches_up_with_commits_made_while_it_ran(tmp_path: Path) -> None:
    # SQLite fsyncs the database file only in a checkpoint that reaches the WAL's end. A lone
    # checkpoint under a writer that never pauses never did: every page it copied waited for the
    # writer's own checkpoint at SAFETY_PAGES, which flushed them all in that writer's commit.
    path = tmp_path / "atlas.db"
    with closing(sqlite3.connect(path)) as setup, setup:
        setup.execute("PRAGMA journal_mode = WAL")
        setup.execute("PRAGMA wal_autocheckpoint = 0")
        setup.execute("CREATE TABLE t (x TEXT)")
        setup.execute("INSERT INTO t VALUES ('before')")
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    conn = sqlite3.connect(path, isolation_level=None, factory=_CommitsDuringFirstCheckpoint)
    conn.writer = writer
    checkpointer = WalCheckpointer(path)
    try:
        checkpointer._checkpoint(conn)
        # The first checkpoint, a second that copied the commit made meanwhile, a third that
        # found the WAL as the second left it: caught up.
        assert conn.landed == 1
        assert (checkpointer.checkpoints, checkpointer.caught_up) == (3, 1)
        # Both rows are in the database file itself, not only in the WAL (immutable: the WAL unread).
        with closing(sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True)) as file_only:
            rows = [r[0] for r in file_only.execute("SELECT x FROM t ORDER BY rowid")]
        assert rows == ["before", "committed during the checkpoint"]
    finally:
        conn.close()
        writer.close()
