"""Reading items and their history, and the lease calls that need no backend's own logic, for both
backends (mixed into the store classes)."""

from __future__ import annotations

from typing import Any

from atlas.store.dialect import BackendMixin
from atlas.store.itemrows import row_to_item
from atlas.store.models import AttemptRecord, Item


class ItemReadsStore(BackendMixin):
    def get_item(self, item_id: str) -> Item | None:
        with self._read() as conn:
            row = conn.execute(self.sql["get_item"], {"id": item_id}).fetchone()
        return row_to_item(row) if row else None

    def get_content(self, item_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(self.sql["get_content"], {"id": item_id}).fetchone()
        return dict(row) if row else None

    def item_attempts(self, item_id: str) -> list[AttemptRecord]:
        with self._read() as conn:
            rows = conn.execute(self.sql["item_attempts"], {"id": item_id}).fetchall()
        return [AttemptRecord(**dict(r)) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        with self._read() as conn:
            return {(r["state"], r["kind"]): int(r["n"]) for r in conn.execute(self.sql["count_by_state"])}

    def completions(self) -> dict[str, int]:
        """How many final transitions each item has had (the crash test expects exactly one)."""
        with self._read() as conn:
            return {r["item_id"]: int(r["n"]) for r in conn.execute(self.sql["completions"])}

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
        p = self.dialect.param
        clauses = ["1 = 1"]
        params: dict[str, Any] = {"limit": limit}
        for column, value in (("state", state), ("kind", kind), ("source", source), ("after", after)):
            if value is not None:
                clauses.append(f"id > {p('after')}" if column == "after" else f"{column} = {p(column)}")
                params[column] = value
        # Filters are optional, so the statement is assembled; every value is still a parameter.
        sql = f"SELECT * FROM items WHERE {' AND '.join(clauses)} ORDER BY id LIMIT {p('limit')}"
        with self._read() as conn:
            return [row_to_item(r) for r in conn.execute(sql, params)]

    # -- leases ---------------------------------------------------------------------------------

    def heartbeat(self, owner: str, lease_seconds: float) -> int:
        with self._write() as conn:
            cur = conn.execute(self.sql["heartbeat"], {"owner": owner, "until": self.clock() + lease_seconds})
            return int(cur.rowcount)

    def release(self, owner: str) -> int:
        with self._write() as conn:
            n = int(conn.execute(self.sql["release_owner"], {"owner": owner, "now": self.clock()}).rowcount)
            if n:
                self._wake(conn)
            return n
