"""The router's per-alert cooldowns in the outbox (atlas.store.outbox): what they let through on
both backends, and on PostgreSQL two routers accepting the same alert at once send it once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from atlas.store.outbox import Candidate, Plan
from atlas.store.postgres.outbox import PgOutbox
from tests.helpers.postgres import migrated_and_empty

HOUR = 3600.0


def plan(fingerprint: str, status: str = "firing", cooldown: float = HOUR) -> list[Plan]:
    return [Plan("webhook", (Candidate(fingerprint, status, cooldown),))]


def test_a_cooldown_holds_back_the_same_alert_and_status_until_it_has_passed(any_outbox: Any) -> None:
    box = any_outbox

    def state(key: str, now: float, **kw: Any) -> str:
        return str(box.accept(key, "g", "firing", {}, plan("f1", **kw), now).deliveries["webhook"])

    assert state("n1", 1000.0) == "pending"
    assert state("n2", 1000.0 + HOUR - 1) == "skipped"  # the same alert, status and channel: held
    assert state("n3", 1000.0 + HOUR - 1, status="resolved") == "pending"  # a status change goes
    assert state("n4", 1000.0 + HOUR, status="resolved") == "skipped"
    assert state("n5", 1000.0 + 2 * HOUR - 1) == "pending"  # firing again: a change again
    assert state("n6", 1000.0 + 3 * HOUR - 1) == "pending"  # its cooldown passed
    assert state("n7", 1000.0 + 3 * HOUR - 1, cooldown=0.0) == "pending"  # no cooldown
    skipped = [d for d in box.deliveries() if d["state"] == "skipped"]
    assert [d["last_error"] for d in skipped] == ["cooldown: every alert was sent recently"] * 2


def test_two_routers_accepting_the_same_alert_at_once_send_it_once(postgres_url: str) -> None:
    url = migrated_and_empty(postgres_url)
    routers = [PgOutbox(url, pool_size=2, lease_owner=f"test:{name}") for name in ("a", "b")]
    rounds = 30
    barrier = threading.Barrier(2)

    def accept(n: int, r: int) -> str:
        barrier.wait(timeout=30)  # both at once: the race the cooldown row must settle
        # Two notifications (two dedupe keys: other alerts of the group changed, say) that both
        # carry alert f{r} to the webhook.
        accepted = routers[n].accept(f"n{r}-{n}", "g", "firing", {}, plan(f"f{r}"), 1000.0 + r)
        return str(accepted.deliveries["webhook"])

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = [sorted(pool.map(accept, (0, 1), (r, r))) for r in range(rounds)]
    finally:
        for box in routers:
            box.close()
    assert outcomes == [["pending", "skipped"]] * rounds
