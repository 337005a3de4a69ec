"""API keys and the small shared state (kv) of a store, for both backends (mixed into the store
classes): the same named queries in each backend's dialect. On PostgreSQL this is one row set in
the shared database, so every process on every host sees the same maintenance mode, heartbeats
and keys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from atlas.store.dialect import BackendMixin
from atlas.store.models import BACKUP_KEY


class KeysAndStateStore(BackendMixin):
    # -- API keys -------------------------------------------------------------------------------

    def api_key_insert(
        self, key_id: str, name: str, scopes: Sequence[str], secret_hash: str, pepper_id: str | None = None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                self.sql["api_key_insert"],
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
            row = conn.execute(self.sql["api_key_get"], {"id": key_id}).fetchone()
        return dict(row) if row else None

    def api_key_list(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute(self.sql["api_key_list"])]

    def api_key_revoke(self, key_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(self.sql["api_key_revoke"], {"id": key_id, "now": self.clock()})
            return bool(cur.rowcount == 1)

    def api_key_touch(self, key_id: str) -> None:
        self.api_key_record_use([(key_id, self.clock())], [])

    def api_key_record_use(
        self, touches: Sequence[tuple[str, float]], rehashes: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """In one transaction: last_used_at for each (key id, time) in `touches`, and for each
        (key id, hash verified, new hash, pepper id) in `rehashes` the new hash, unless the stored
        hash has changed since it was verified."""
        with self._write() as conn:
            many = self.dialect.executemany
            many(conn, self.sql["api_key_touch"], [{"id": k, "now": at} for k, at in touches])
            many(
                conn,
                self.sql["api_key_rehash"],
                [{"id": k, "old_hash": o, "new_hash": n, "pepper_id": p} for k, o, n, p in rehashes],
            )

    # -- shared state ---------------------------------------------------------------------------

    def kv_get(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(self.sql["kv_get"], {"key": key}).fetchone()
        return str(row["value"]) if row else None

    def kv_set(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(self.sql["kv_set"], {"key": key, "value": value, "now": self.clock()})

    def kv_items(self, prefix: str) -> list[tuple[str, str]]:
        with self._read() as conn:
            return [(r["key"], r["value"]) for r in conn.execute(self.sql["kv_items"], {"prefix": prefix})]

    def kv_delete(self, key: str) -> None:
        with self._write() as conn:
            conn.execute(self.sql["kv_delete"], {"key": key})

    def kv_prune(self, prefix: str, older_than_seconds: float) -> int:
        with self._write() as conn:
            cur = conn.execute(
                self.sql["kv_prune"], {"prefix": prefix, "before": self.clock() - older_than_seconds}
            )
            return int(cur.rowcount)

    def record_backup(self, finished_at: float, size_bytes: int, path: str) -> None:
        """Remember the last verified backup (kv BACKUP_KEY), which the exporter's gauges report."""
        self.kv_set(BACKUP_KEY, json.dumps({"finished_at": finished_at, "bytes": size_bytes, "path": path}))
