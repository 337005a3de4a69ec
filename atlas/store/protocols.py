"""The store seam, split by concern: every caller outside atlas/store depends on these protocols.

A caller asks for the narrowest protocol it uses (the engine: `QueueStore`; a health check:
`KVStore`); processes that hand one store to many parts hold an `AtlasStore`, which both backends
satisfy (mypy checks it: see the assertions at the end of atlas/store/__init__.py).

Methods are synchronous and thread-safe; each is one transaction unless it says otherwise. Driver
errors are translated to atlas.errors.StoreError with the cause kept. What a backend cannot do
raises StoreError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from atlas.store.base import Store
from atlas.store.models import (
    Item,
    NewItem,
    PlanStep,
    RssSample,
    SearchHit,
    StoreStats,
)

# The engine's protocol (claim, lease, apply, DLQ) keeps its name; this one adds what the API and
# atlas-ops read about the queue.


class QueueStore(Store, Protocol):
    def recount_items(self) -> None:
        """Rebuild the per-(state, kind) counters from the rows."""
        ...

    def completions(self) -> dict[str, int]:
        """How many final transitions each item has had."""
        ...

    def list_items(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        source: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Item]:
        """Items in id (acceptance) order after the cursor `after`, filtered."""
        ...

    def queue_stats(self) -> dict[str, float]:
        """`queued`, `oldest_queued_at` (0 if none) and `completions` so far."""
        ...


class ContentStore(Protocol):
    def get_content(self, item_id: str) -> dict[str, Any] | None: ...

    def search(
        self, query: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[SearchHit], str | None]:
        """Contents matching every word of `query`, best first; (hits, next cursor or None).
        Raises ItemError for a cursor the store did not hand out."""
        ...


class FeedStore(Protocol):
    def feed_add(self, url: str, interval_seconds: float | None = None) -> dict[str, Any]: ...

    def feed_get(self, feed_id: str) -> dict[str, Any] | None: ...

    def feed_list(self, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def feed_poll_now(self, feed_id: str) -> dict[str, Any] | None: ...

    def feed_delete(self, feed_id: str) -> bool: ...

    def feeds_due(self, now: float, limit: int, default_interval: float = 900.0) -> list[dict[str, Any]]: ...

    def feed_polled(
        self,
        feed_id: str,
        entries: Sequence[tuple[str, NewItem]],
        *,
        status: str,
        next_poll_at: float,
        etag: str | None = None,
        last_modified: str | None = None,
        title: str | None = None,
    ) -> int: ...

    def feed_failed(self, feed_id: str, error: str, *, next_poll_at: float, count: bool = True) -> None: ...


class KeyStore(Protocol):
    clock: Callable[[], float]  # the store's time source: key use is stamped with it

    def api_key_insert(
        self, key_id: str, name: str, scopes: Sequence[str], secret_hash: str, pepper_id: str | None = None
    ) -> None: ...

    def api_key_get(self, key_id: str) -> dict[str, Any] | None: ...

    def api_key_list(self) -> list[dict[str, Any]]: ...

    def api_key_revoke(self, key_id: str) -> bool: ...

    def api_key_touch(self, key_id: str) -> None: ...

    def api_key_record_use(
        self, touches: Sequence[tuple[str, float]], rehashes: Sequence[tuple[str, str, str, str]]
    ) -> None: ...


class KVStore(Protocol):
    """Shared state every process reads: maintenance mode, heartbeats, the last backup."""

    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...

    def kv_items(self, prefix: str) -> list[tuple[str, str]]: ...

    def kv_delete(self, key: str) -> None: ...

    def kv_prune(self, prefix: str, older_than_seconds: float) -> int: ...

    def record_backup(self, finished_at: float, size_bytes: int, path: str) -> None:
        """Remember the last verified backup (kv BACKUP_KEY), which the exporter reports."""
        ...

    def close(self) -> None: ...


class StatsStore(Protocol):
    def stats_snapshot(self) -> StoreStats:
        """The exporter's business figures in one read-only transaction, from maintained counters
        and index seeks only (the same cost at any size). Never writes, creates or migrates;
        raises StoreError when the database cannot be read (the exporter reports store_up 0)."""
        ...

    def close(self) -> None: ...


class OpsStore(Protocol):
    """Figures for `atlas-ops monitoring` and `system check --database`, and database care."""

    migrations_applied: int  # by this store object when it opened (migrate=True)

    def schema_version(self) -> int: ...

    def rss_record(self, samples: Sequence[RssSample], retain_seconds: float, max_rows: int = ...) -> int: ...

    def rss_history(self, since: float) -> list[RssSample]: ...

    def finished_since(self, since: float) -> dict[str, int]:
        """Final transitions since `since` by outcome (done, duplicate, dead)."""
        ...

    def page_facts(self) -> dict[str, int]:
        """page_size, page_count and freelist_count (free pages a VACUUM would give back)."""
        ...

    def query_plans(self) -> list[tuple[str, list[PlanStep]]]:
        """(name, plan steps) of each hot query; a step that reads a whole table is full_scan."""
        ...

    def integrity_problems(self) -> list[str]:
        """The database's own integrity check; [] when sound, else its findings."""
        ...

    def integrity_check_name(self) -> str:
        """What integrity_problems checks, for the report (e.g. PRAGMA integrity_check)."""
        ...

    def relation_facts(self) -> list[dict[str, Any]]:
        """Per table: bytes of table and indexes, live and dead rows, last vacuum/analyze, where
        the backend keeps such statistics ([] where it does not: SQLite)."""
        ...

    def storage_bytes(self) -> dict[str, int]:
        """`database` and `wal`: bytes on disk (wal 0 where the backend has none)."""
        ...

    def optimize(self) -> dict[str, int]:
        """Refresh planner statistics and checkpoint the WAL (safe while Atlas runs)."""
        ...

    def vacuum(self, *, reserve_bytes: int) -> dict[str, int]:
        """Give free pages back; refused with StoreError unless the disk has room to spare."""
        ...

    def routine_upkeep(self) -> dict[str, int]:
        """The cheap scheduled care `atlas services` runs while Atlas writes."""
        ...

    def backup_to(self, dest: Path) -> None:
        """A consistent online copy of the whole database into the file `dest`, taken while
        other processes keep writing. Raises StoreError."""
        ...


class AtlasStore(QueueStore, ContentStore, FeedStore, KeyStore, KVStore, StatsStore, OpsStore, Protocol):
    """Everything a process that hands one store to all its parts may call."""


class DatabaseArchive(Protocol):
    """A backend's database backup files: what `backup create|verify|restore` do to files no store
    has open (the copy in an archive, a restore's staged database). Paths are the backend's own
    backup format: an SQLite file, or a pg_dump custom-format file."""

    backend: str  # "sqlite" or "postgresql": written in the manifest, read back by verify
    member: str  # the database's member name in an archive (atlas.db, atlas.pgdump)
    check_name: str  # what integrity_problems checks, for verify's report

    def exists(self) -> bool:
        """Whether the live database exists (nothing to back up, nothing to keep, otherwise)."""
        ...

    def beside_live(self, template: str) -> Path:
        """A file path beside the live database, `template` formatted with its file `name`
        (a restore's staged copy before `install`, the copy of what it replaces)."""
        ...

    def latest_schema_version(self) -> int: ...

    def foreign_sessions(self, local_pids: set[int]) -> list[str]:
        """Atlas processes using the live database that are not `local_pids` (processes of this
        host a restore manages), named for a refusal. Raises StoreError."""
        ...

    def copy_live(self, dest: Path) -> None:
        """A consistent online copy of the live database into `dest`. Raises StoreError."""
        ...

    def checkpoint_live(self) -> None: ...

    def integrity_problems(self, path: Path) -> list[str]: ...

    def facts(self, path: Path) -> tuple[int, dict[str, int], int]:
        """(schema version, items by state, contents) of a backup file, for its manifest."""
        ...

    def schema_version(self, path: Path) -> int: ...

    def get_kv(self, path: Path, key: str) -> str | None: ...

    def set_kv(self, path: Path, key: str, value: str, now: float) -> None: ...

    def install(self, staged: Path) -> Path:
        """Make `staged` the live database (atomically, durably); returns the live path."""
        ...
