"""What applying engine transitions and reaping expired leases write, for both backends.

How a backend decides that a result is a duplicate differs (SQLite holds its one write lock for
the whole transaction and looks owners up front; PostgreSQL relies on row locks, a unique hash and
advisory locks: atlas.store.postgres.apply); the rows written once it has decided are these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from atlas.store.itemrows import to_json
from atlas.store.models import DEAD_LEASE_EXPIRED, FINAL_STATES, ContentResult, Transition


def _same(text: str | None) -> str | None:
    return text


def content_row(
    item_id: str, r: ContentResult, now: float, clean: Callable[[str | None], str | None] = _same
) -> dict[str, Any]:
    """insert_content's parameters; `clean` is what the backend's text columns need done to text."""
    return {
        "id": item_id,
        "content_hash": r.content_hash,
        "content_type": r.content_type,
        "title": clean(r.title),
        "text": clean(r.text) or "",
        "canonical_url": r.canonical_url,
        "language": r.language,
        "author": clean(r.author),
        "published": r.published,
        "url": r.url,
        "bytes": len(r.text.encode("utf-8")),
        "now": now,
    }


@dataclass
class TransitionRows:
    """The parameter rows of one batch of transitions, per named query, gathered by `add`."""

    now: float
    # The transitions are of items still queued, chosen in this same transaction and never
    # leased (claim_settling), rather than of items leased under their token.
    settling: bool = False
    # SQLite: settled documents stored or found duplicates go to `settle_done` (a narrower update
    # of the same row), not `transition`.
    split_done: bool = False
    transition: list[dict[str, Any]] = field(default_factory=list)
    settle_done: list[dict[str, Any]] = field(default_factory=list)
    insert_attempt: list[dict[str, Any]] = field(default_factory=list)
    insert_completion: list[dict[str, Any]] = field(default_factory=list)
    validators_upsert: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # item id -> outcome

    def add(self, t: Transition, duplicate_of: str | None = None) -> None:
        """Record `t`, a duplicate of `duplicate_of` when that is set (the item that owns its text)."""
        now, err = self.now, t.error
        state, outcome = ("duplicate", "duplicate") if duplicate_of else (t.state, t.outcome)
        r = t.result
        if r is not None and r.url and (r.etag or r.last_modified):
            self.validators_upsert.append(
                {
                    "url": r.url,
                    "etag": r.etag,
                    "last_modified": r.last_modified,
                    "item_id": duplicate_of or t.item_id,
                    "content_hash": r.content_hash,
                    "now": now,
                }
            )
        token = None if self.settling else t.token
        narrow = (
            self.split_done
            and state in ("done", "duplicate")
            and (t.attempts_inc, t.deaths_inc, t.isolate) == (1, 0, False)
        )
        if narrow and err is None:
            # A document settled inline (nearly every row of such a claim): settle_done's own
            # parameters and the completion, not the 21 of `transition` (issue 18).
            self.settle_done.append(
                {
                    "id": t.item_id,
                    "state": state,
                    "content_hash": r.content_hash if r else None,
                    "duplicate_of": duplicate_of,
                    "timings": to_json(t.timings),
                    "now": now,
                }
            )
            self.insert_completion.append({"id": t.item_id, "outcome": state, "token": token, "now": now})
            self.applied[t.item_id] = outcome
            return
        params = {
            "id": t.item_id,
            "token": token,
            "from_state": "queued" if self.settling else "leased",
            "state": state,
            "attempts_inc": t.attempts_inc,
            "deaths_inc": t.deaths_inc,
            "isolate": int(t.isolate),
            "next_attempt_at": t.next_attempt_at or now,
            "error_stage": err.stage if err else None,
            "error_class": err.error_class if err else None,
            "error_message": err.message if err else None,
            "error_host": err.host if err else None,
            "dead_reason": t.dead_reason,
            "content_hash": r.content_hash if r else None,
            "duplicate_of": duplicate_of,
            "timings": to_json(t.timings),
            "done_at": now if state in FINAL_STATES else None,
            "now": now,
            "attempt_offset": 0,
            "outcome": t.outcome,
            # SQLite: settling counts its state changes once per transaction (migration 0012)
            "counted": self.settling,
        }
        if narrow:
            self.settle_done.append(params)
        else:
            self.transition.append(params)
        if err is not None and t.outcome != "deferred":  # a deferral is not an attempt
            self.insert_attempt.append(params)
        if state in FINAL_STATES:
            self.insert_completion.append({"id": t.item_id, "outcome": state, "token": token, "now": now})
        self.applied[t.item_id] = outcome

    def batches(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(query name, rows) in the order they are written: items, attempts, completions, validators
        (settle_done's, like transition's, are items)."""
        return [
            ("transition", self.transition),
            ("settle_done", self.settle_done),
            ("insert_attempt", self.insert_attempt),
            ("insert_completion", self.insert_completion),
            ("validators_upsert", self.validators_upsert),
        ]


def reap_expired(conn: Any, sql: Mapping[str, str], now: float, max_lease_expiries: int) -> int:
    """Requeue (or, at `max_lease_expiries`, dead-letter) the items whose lease has expired, each
    with an attempt recorded, in the caller's transaction; returns how many."""
    expired = conn.execute(sql["expired_leases"], {"now": now}).fetchall()
    for row in expired:
        dead = row["lease_expiries"] + 1 >= max_lease_expiries
        message = f"lease held by {row['lease_owner']} expired (engine stopped or hung)"
        conn.execute(
            sql["insert_attempt"],
            {
                "id": row["id"],
                "attempt_offset": 1,
                "now": now,
                "outcome": "lease_expired",
                "error_stage": "engine",
                "error_class": "LeaseExpired",
                "error_message": message,
                "error_host": None,
            },
        )
        conn.execute(
            sql["reap_lease"],
            {
                "id": row["id"],
                "state": "dead" if dead else "queued",
                "now": now,
                "message": message,
                "dead_reason": DEAD_LEASE_EXPIRED if dead else None,
            },
        )
        if dead:
            conn.execute(
                sql["insert_completion"], {"id": row["id"], "outcome": "dead", "token": None, "now": now}
            )
    return len(expired)
