"""The store protocol: the seam every storage backend (SQLite now, PostgreSQL later) implements.

Methods are synchronous and thread-safe; each is one transaction unless it says otherwise.
Driver errors are translated to atlas.errors.StoreError with the cause kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from atlas.store.models import (
    AttemptRecord,
    Claimed,
    ClaimSettled,
    DLQFilter,
    DLQGroup,
    EnqueueResult,
    Item,
    NewItem,
    PreparedItems,
    Settle,
    SettledDocument,
    Transition,
)


class Store(Protocol):
    # Whether write transactions from several connections run side by side (PostgreSQL) rather
    # than one after another (SQLite): the engine runs that many of its claims at once.
    concurrent_writers: bool

    def prepare(self, items: Sequence[NewItem]) -> PreparedItems:
        """Ids and insert rows for `items`, accepted now; no transaction (for enqueue)."""
        ...

    def enqueue(self, items: Sequence[NewItem] | PreparedItems) -> list[EnqueueResult]:
        """Insert items durably in one transaction; a known idempotency key returns its item.
        Results follow `items`' order, one per item."""
        ...

    def get_item(self, item_id: str) -> Item | None: ...

    def item_attempts(self, item_id: str) -> list[AttemptRecord]: ...

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Lease up to `limit` due items to `owner`, highest priority and oldest due first."""
        ...

    def claim_settling(
        self, owner: str, limit: int, lease_seconds: float, settle: Settle, lease_limit: int | None = None
    ) -> ClaimSettled:
        """Choose up to `limit` due items as claim() does, in one transaction with settling those
        that `settle` returns a transition for (cheap work done right there: they are never
        leased, and a crash loses nothing, as the transaction commits both or neither); the
        others are leased to `owner`, at most `lease_limit` of them (None: all), the rest left
        queued. `settle` must not touch the store."""
        ...

    def heartbeat(self, owner: str, lease_seconds: float) -> int:
        """Extend every lease `owner` holds; returns how many."""
        ...

    def apply(self, transitions: Sequence[Transition]) -> dict[str, str]:
        """Apply transitions in one transaction; a stale lease token is skipped.

        Returns {item id: outcome} for those applied (a `done` whose content exists is `duplicate`).
        """
        ...

    def reap_expired(self, max_lease_expiries: int) -> int:
        """Requeue items whose lease ran out (or quarantine after too many); returns how many."""
        ...

    def release(self, owner: str) -> int:
        """Give every lease `owner` holds back to the queue without counting an attempt."""
        ...

    def counts(self) -> dict[tuple[str, str], int]:
        """Items by (state, kind)."""
        ...

    def dlq_list(self, flt: DLQFilter, limit: int = 100, after: str | None = None) -> list[Item]: ...

    def dlq_groups(self, flt: DLQFilter, limit: int = 50) -> list[DLQGroup]: ...

    def dlq_replay(self, flt: DLQFilter, dry_run: bool = False) -> int: ...

    def dlq_purge(self, flt: DLQFilter, dry_run: bool = False) -> int: ...

    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...

    def kv_delete(self, key: str) -> None: ...

    def kv_prune(self, prefix: str, older_than_seconds: float) -> int:
        """Delete keys starting with `prefix` not written for `older_than_seconds`."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class HandsOff(Protocol):
    """A store whose claim_settling can hand items out (HANDOFF) to be settled later, elsewhere:
    the engine's workers settle cheap documents off the store's thread (atlas.engine.handoff)."""

    # True: each handed document's result carries its tsvector (atlas.store.tsvector), made by
    # the worker that settled it, off the store's process.
    handed_tsvector: bool

    def settle_handed(
        self, docs: Sequence[SettledDocument], handed: Mapping[str, tuple[int, str]]
    ) -> dict[str, str]:
        """Write handed documents' stored results in one transaction (done, or duplicate of the
        text's owner), each only if the item is still queued, unleased and at the attempts it was
        handed at (`handed`: item id -> (those attempts, its kind)); {item id: outcome} of those
        written. Every one of `docs` stops being handed, written or not."""
        ...

    def forget_handed(self, item_ids: Sequence[str]) -> None:
        """These handed items were not settled: this process's claims may choose them again."""
        ...
