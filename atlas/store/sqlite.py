"""The SQLite store: the Store protocol on one SQLite file, the embedded default.

Assembled by concern: connections, transactions and migrations (sqlite_connection), the queue
(sqlite_queue), items entering the items table (sqlite_items), search and feeds (sqlite_content),
the DLQ (sqlite_dlq), operations (sqlite_ops, sqlite_maint, sqlite_stats); what both backends
share is atlas.store (itemreads, sharedstate for keys and kv, feedsearch, dlq, transitions).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from atlas.store.itemreads import ItemReadsStore
from atlas.store.sharedstate import KeysAndStateStore
from atlas.store.sqlite_connection import SQLITE, SQLiteConnections
from atlas.store.sqlite_connection import _split_sql as _split_sql
from atlas.store.sqlite_connection import is_locked as is_locked
from atlas.store.sqlite_connection import migrations as migrations
from atlas.store.sqlite_content import C, ContentStore
from atlas.store.sqlite_dlq import SQLiteDLQ
from atlas.store.sqlite_dlq import dlq_groups_query as dlq_groups_query
from atlas.store.sqlite_dlq import dlq_list_query as dlq_list_query
from atlas.store.sqlite_ops import OpsStore
from atlas.store.sqlite_queue import Q, SQLiteQueue


class SQLiteStore(
    SQLiteConnections, SQLiteQueue, ItemReadsStore, ContentStore, KeysAndStateStore, SQLiteDLQ, OpsStore
):
    """Store protocol on one SQLite file. Thread-safe: each thread gets its own connection."""

    dialect = SQLITE
    concurrent_writers = False  # one writer at a time: the database file's lock
    sql = {**Q, **C}

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.time,
        migrate: bool = True,
    ) -> None:
        """Open the database at `path`; with `migrate` (the default) create and migrate it first.

        `migrate=False` (what read and write commands of the CLI use) never creates a file or
        changes the schema: it raises DatabaseNotReady when the file is missing or its schema is
        not the one this version of Atlas ships.
        """
        self.clock = clock
        # Items claim_settling handed out (HANDOFF) and settle_handed has not yet written: id ->
        # rowid, which this process's claims pass over. In memory only: the rows stay queued and
        # unleased, so a crash leaves them for the next claim.
        self._handed: dict[str, int] = {}
        self._handed_lock = threading.Lock()
        super().__init__(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, migrate=migrate)
