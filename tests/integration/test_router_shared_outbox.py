"""Two `atlas alert-router` processes (one per Alertmanager of an HA pair, as on two hosts: two
ports, two data dirs) on one PostgreSQL database: the same notification posted to both, at the
same moment, reaches each channel once, because both routers dedupe against the same outbox."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.helpers.engine import wait_for
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import RouterProcess, alert, config_dir, payload, postgres_env

NOTIFICATIONS = 6


def test_two_routers_on_one_database_deliver_each_notification_once_per_channel(
    tmp_path: Path, postgres_url: str
) -> None:
    hook, slack = HttpReceiver(), HttpReceiver()
    env = postgres_env(postgres_url)
    routers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cfg = config_dir(tmp_path / name, webhook_url=hook.url, slack_url=slack.url)
        routers.append(RouterProcess(tmp_path / name, cfg, **env))
    try:
        for r in routers:
            r.start()
        bodies = [payload(f"Group{i}", [alert(f"f{i}", severity="critical")]) for i in range(NOTIFICATIONS)]
        # Both routers get each notification at once (two threads per notification), as the two
        # Alertmanagers of a pair send it: the race the shared dedupe key must settle.
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = [list(pool.map(RouterProcess.post, routers, [body, body])) for body in bodies]
        for pair in answers:
            assert [a.status_code for a in pair] == [200, 200]
            assert sorted(a.json()["duplicate"] for a in pair) == [False, True], [a.json() for a in pair]
            assert pair[0].json()["id"] == pair[1].json()["id"]

        def all_sent() -> bool:
            # Either router's audit trail shows the other's rows too: one database.
            rows = routers[0].notifications()
            return len(rows) == NOTIFICATIONS and all(
                d["state"] == "sent" for n in rows for d in n["deliveries"]
            )

        wait_for(all_sent, 60, "every delivery recorded as sent")
        assert len(routers[1].notifications()) == NOTIFICATIONS
        for receiver in (hook, slack):
            # Every delivery of the outbox is recorded as sent and there is one per notification
            # and channel, so nothing more can arrive: the counts are final.
            got = receiver.ok()
            assert len(got) == NOTIFICATIONS, [r.headers.get("idempotency-key") for r in got]
        keys = Counter(r.headers["idempotency-key"] for r in hook.ok())
        assert len(keys) == NOTIFICATIONS and max(keys.values()) == 1
        assert {json.loads(r.body)["groupKey"] for r in hook.ok()} == {b["groupKey"] for b in bodies}
        for r in routers:
            assert httpx.get(f"{r.base}/health").json()["status"] == "healthy"
    finally:
        for r in routers:
            r.stop()
        hook.close()
        slack.close()


def test_a_router_that_restarts_releases_its_own_leases_not_its_peers(postgres_url: str) -> None:
    """A router starting releases the leases of its previous process (same host and data dir);
    the peer's leases stay: the peer is alive and sending those deliveries."""
    from atlas.store.outbox import Candidate, Plan
    from atlas.store.postgres.outbox import PgOutbox
    from tests.helpers.postgres import migrated_and_empty

    url = migrated_and_empty(postgres_url)
    a = PgOutbox(url, pool_size=1, lease_owner="host-a:/data")
    b = PgOutbox(url, pool_size=1, lease_owner="host-b:/data")
    try:
        for i in range(2):
            plans = [Plan("webhook", (Candidate(f"f{i}", "firing", 0.0),))]
            a.accept(f"k{i}", f"g{i}", "firing", {"alerts": []}, plans, now=1.0)
        assert len(a.claim("webhook", 1, now=2.0, lease_seconds=600)) == 1
        assert len(b.claim("webhook", 5, now=2.0, lease_seconds=600)) == 1  # the other one
        assert b.release_leases() == 1  # b restarted: its own lease only
        assert [d.dedupe_key for d in b.claim("webhook", 5, now=3.0, lease_seconds=600)] == ["k1"]
        assert a.release_leases() == 1
        assert [d.dedupe_key for d in b.claim("webhook", 5, now=4.0, lease_seconds=600)] == ["k0"]
    finally:
        a.close()
        b.close()
