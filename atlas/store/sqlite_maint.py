"""SQLite file operations for backups and database care: online copy, integrity, optimize, vacuum.

These work on a database *file* with their own short-lived connection, never through a running
store's connections, so `atlas-ops` can run them while the API and engine keep writing. They live
in store/ because nothing outside it imports sqlite3 (DESIGN.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atlas.errors import StoreError
from atlas.fsutil import fsync_path
from atlas.store.sqlite_connection import migrations


@contextmanager
def _open(
    path: Path, *, must_exist: bool = True, busy_timeout_ms: int = 10_000
) -> Iterator[sqlite3.Connection]:
    # mode=rw never creates a missing file: a typo in a path is an error, not a new empty database.
    if must_exist and not path.is_file():
        raise StoreError(f"no database at {path}")
    uri = f"{path.resolve().as_uri()}?mode={'rw' if must_exist else 'rwc'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()


def online_copy(source: Path, dest: Path) -> None:
    """Copy `source` to `dest` with SQLite's backup API while other processes keep writing.

    One step (pages=-1): the copy is one read transaction, a consistent snapshot of every commit
    made before it began. In WAL mode writers are not blocked by it; a stepwise copy would instead
    restart whenever a writer commits between steps and, under sustained ingest, might never end.
    The copy is switched to rollback-journal mode so it is one self-contained file.
    Raises StoreError (a missing source included).
    """
    dest.unlink(missing_ok=True)
    with _open(source) as src, _open(dest, must_exist=False) as dst:
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode = DELETE")
    fsync_path(dest)


@dataclass(frozen=True)
class DatabaseFacts:
    schema_version: int
    items: dict[str, int]  # by state
    contents: int


def facts(path: Path) -> DatabaseFacts:
    """Schema version and item counts of a database file (for a backup's manifest)."""
    with _open(path) as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        items = dict(conn.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall())
        try:
            contents = int(conn.execute("SELECT count(*) FROM contents").fetchone()[0])
        except sqlite3.OperationalError:
            contents = 0  # a store from before migration 0004 has no contents table
    return DatabaseFacts(version, {str(k): int(v) for k, v in items.items()}, contents)


def integrity_check(path: Path) -> list[str]:
    """PRAGMA integrity_check; [] when the file is sound, else SQLite's findings (at most 20).

    A file that is not a database at all is reported as a finding, not raised.
    """
    try:
        with _open(path) as conn:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    except StoreError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def schema_version(path: Path) -> int:
    with _open(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def get_kv(path: Path, key: str) -> str | None:
    with _open(path) as conn:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_kv(path: Path, key: str, value: str, now: float) -> None:
    """Write one kv row into a database file that no store has open (a restore's staged copy)."""
    with _open(path) as conn:
        conn.execute(
            "INSERT INTO kv(key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, now),
        )


def checkpoint(path: Path) -> tuple[int, int, int]:
    """PRAGMA wal_checkpoint(TRUNCATE): (busy, wal frames, frames checkpointed)."""
    with _open(path) as conn:
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy), int(log), int(done)


def wal_path(path: Path) -> Path:
    return Path(f"{path}-wal")


def file_bytes(path: Path) -> int:
    """The database's size on disk, its WAL included."""
    return sum(p.stat().st_size for p in (path, wal_path(path)) if p.exists())


def optimize(path: Path) -> dict[str, int]:
    """PRAGMA optimize, ANALYZE, then a TRUNCATE checkpoint; returns the WAL's size before and after."""
    wal_before = wal_path(path).stat().st_size if wal_path(path).exists() else 0
    with _open(path) as conn:
        conn.execute("PRAGMA optimize")
        conn.execute("ANALYZE")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    wal_after = wal_path(path).stat().st_size if wal_path(path).exists() else 0
    return {"wal_bytes_before": wal_before, "wal_bytes_after": wal_after, "checkpoint_busy": int(busy)}


def vacuum(
    path: Path,
    *,
    reserve_bytes: int,
    free_bytes: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free,
) -> dict[str, int]:
    """VACUUM the file; returns its size before and after and the bytes reclaimed.

    VACUUM writes a whole new copy of the database (and as much again through the WAL) before it
    frees anything, so it is refused unless twice the database's size fits on its filesystem with
    `reserve_bytes` (the disk low-water mark the API sheds writes under) still free afterwards.
    Raises StoreError naming the figures when it refuses.
    """
    if not path.is_file():
        raise StoreError(f"no database at {path}")
    before = file_bytes(path)
    needed = 2 * before + reserve_bytes
    free = free_bytes(path.parent)
    if free < needed:
        raise StoreError(
            f"vacuum refused: {free} bytes free on {path.parent}, needs {needed}"
            f" (2 x database {before} + low-water reserve {reserve_bytes})"
        )
    with _open(path) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = file_bytes(path)
    return {"bytes_before": before, "bytes_after": after, "bytes_reclaimed": max(0, before - after)}


def routine_upkeep(path: Path, busy_timeout_ms: int = 1000) -> dict[str, int]:
    """What `atlas services` runs on a schedule while Atlas writes: PRAGMA optimize (cheap: it
    analyzes only what changed enough) and a TRUNCATE checkpoint. No full ANALYZE: it reads every
    table. The short busy timeout bounds how long the checkpoint can hold writers back; a busy
    checkpoint (checkpoint_busy 1) is simply tried again next time.
    """
    with _open(path, busy_timeout_ms=busy_timeout_ms) as conn:
        conn.execute("PRAGMA optimize")
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return {"checkpoint_busy": int(busy), "wal_frames": int(log), "frames_checkpointed": int(done)}


class SQLiteArchive:
    """The DatabaseArchive protocol for SQLite: backups are consistent copies of the file."""

    backend = "sqlite"
    member = "atlas.db"
    check_name = "PRAGMA integrity_check"

    def __init__(self, live: Path | None) -> None:
        self._live = live

    @property
    def live(self) -> Path:
        if self._live is None:
            raise StoreError("no live database given: this archive reader only reads backup files")
        return self._live

    def exists(self) -> bool:
        return self.live.is_file()

    def foreign_sessions(self, local_pids: set[int]) -> list[str]:
        """None to see: an SQLite database is one host's file, whose processes leave pid files."""
        return []

    def beside_live(self, template: str) -> Path:
        self.live.parent.mkdir(parents=True, exist_ok=True)
        return self.live.parent / template.format(name=self.live.name)

    def latest_schema_version(self) -> int:
        return max(version for version, _, _ in migrations())

    def copy_live(self, dest: Path) -> None:
        online_copy(self.live, dest)

    def checkpoint_live(self) -> None:
        checkpoint(self.live)

    def integrity_problems(self, path: Path) -> list[str]:
        return integrity_check(path)

    def facts(self, path: Path) -> tuple[int, dict[str, int], int]:
        found = facts(path)
        return found.schema_version, found.items, found.contents

    def schema_version(self, path: Path) -> int:
        return schema_version(path)

    def get_kv(self, path: Path, key: str) -> str | None:
        return get_kv(path, key)

    def set_kv(self, path: Path, key: str, value: str, now: float) -> None:
        set_kv(path, key, value, now)

    def install(self, staged: Path) -> Path:
        fsync_path(staged)
        # The old database's WAL must not be replayed into the restored file.
        for suffix in ("-wal", "-shm"):
            Path(f"{self.live}{suffix}").unlink(missing_ok=True)
        os.replace(staged, self.live)
        fsync_path(self.live.parent)
        return self.live
