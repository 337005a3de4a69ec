"""API keys and the small shared state (kv) on the PostgreSQL store (mixed into PostgresStore):
one row set in the shared database, so every process on every host sees the same maintenance
mode, heartbeats and keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from atlas.store.models import BACKUP_KEY
from atlas.store.postgres.connection import Conn
from atlas.store.queries import load_queries

Q = load_queries("atlas.store.postgres", "queries.sql")


class SharedStateStore:
    if TYPE_CHECKING:
        clock: Callable[[], float]

        def _read(self) -> AbstractContextManager[Conn]: ...

        def _write(self) -> AbstractContextManager[Conn]: ...

    # -- API keys -------------------------------------------------------------------------------

    def api_key_insert(
        self, key_id: str, name: str, scopes: Sequence[str], secret_hash: str, pepper_id: str | None = None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                Q["api_key_insert"],
                {
                    "id": key_id,
                    "name": name,
                    "scopes": ",".join(scopes),
                    "secret_hash": secret_hash,
                    "pepper_id": pepper_id,
                    "now": self.clock(),
                },
            )

    def api_key_get(self, key_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(Q["api_key_get"], {"id": key_id}).fetchone()
        return dict(row) if row else None

    def api_key_list(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute(Q["api_key_list"])]

    def api_key_revoke(self, key_id: str) -> bool:
        with self._write() as conn:
            return conn.execute(Q["api_key_revoke"], {"id": key_id, "now": self.clock()}).rowcount == 1

    def api_key_touch(self, key_id: str) -> None:
        self.api_key_record_use([(key_id, self.clock())], [])

    def api_key_record_use(
        self, touches: Sequence[tuple[str, float]], rehashes: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """As SQLiteStore.api_key_record_use: touches and conditional re-hashes in one transaction."""
        with self._write() as conn:
            cur = conn.cursor()
            if touches:
                cur.executemany(Q["api_key_touch"], [{"id": k, "now": at} for k, at in touches])
            if rehashes:
                cur.executemany(
                    Q["api_key_rehash"],
                    [{"id": k, "old_hash": o, "new_hash": n, "pepper_id": p} for k, o, n, p in rehashes],
                )

    # -- shared state ---------------------------------------------------------------------------

    def kv_get(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(Q["kv_get"], {"key": key}).fetchone()
        return str(row["value"]) if row else None

    def kv_set(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(Q["kv_set"], {"key": key, "value": value, "now": self.clock()})

    def kv_items(self, prefix: str) -> list[tuple[str, str]]:
        with self._read() as conn:
            return [(r["key"], r["value"]) for r in conn.execute(Q["kv_items"], {"prefix": prefix})]

    def kv_delete(self, key: str) -> None:
        with self._write() as conn:
            conn.execute(Q["kv_delete"], {"key": key})

    def kv_prune(self, prefix: str, older_than_seconds: float) -> int:
        with self._write() as conn:
            return conn.execute(
                Q["kv_prune"], {"prefix": prefix, "before": self.clock() - older_than_seconds}
            ).rowcount

    def record_backup(self, finished_at: float, size_bytes: int, path: str) -> None:
        """Remember the last verified backup (kv BACKUP_KEY), which the exporter's gauges report."""
        self.kv_set(BACKUP_KEY, json.dumps({"finished_at": finished_at, "bytes": size_bytes, "path": path}))
