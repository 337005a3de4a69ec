"""`atlas alert-router` for real: the webhook's validation, auth, size cap, dedupe, audit trail,
health and metrics, with a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers.engine import wait_for
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import AUTH, HMAC_KEY, RouterProcess, alert, config_dir, payload, postgres_env

# Where the router's outbox is: its SQLite file by default; the tests parametrised over both
# backends run on the session's PostgreSQL database too (ATLAS_DATABASE_URL).
BOTH = pytest.mark.parametrize("router_backend", ["sqlite", "postgres"])


@pytest.fixture
def router_backend() -> str:
    return "sqlite"


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def router(
    request: pytest.FixtureRequest, tmp_path: Path, hook: HttpReceiver, router_backend: str
) -> Iterator[RouterProcess]:
    env = postgres_env(request.getfixturevalue("postgres_url")) if router_backend == "postgres" else {}
    proc = RouterProcess(
        tmp_path, config_dir(tmp_path, webhook_url=hook.url), ATLAS_ROUTER_MAX_BODY_BYTES="64KiB", **env
    )
    proc.start()
    yield proc
    proc.stop()


@BOTH
def test_bad_payloads_get_400_naming_the_field(router: RouterProcess) -> None:
    good = payload("G", [alert("f1")])
    cases = {
        "version": {**good, "version": "3"},
        "groupKey": {k: v for k, v in good.items() if k != "groupKey"},
        "alerts[0].fingerprint": {**good, "alerts": [{**alert("f1"), "fingerprint": 7}]},
        "alerts[0].status": {**good, "alerts": [{**alert("f1"), "status": "pending"}]},
        "alerts[0].labels.severity": {**good, "alerts": [{**alert("f1"), "labels": {"severity": 1}}]},
        "alerts": {**good, "alerts": []},
        "status": {**good, "status": "maybe"},
    }
    for field, body in cases.items():
        r = router.post(body)
        assert r.status_code == 400, (field, r.text)
        assert r.json()["error"].startswith(f"{field}:"), (field, r.json())
    r = httpx.post(f"{router.base}/v1/alertmanager", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"].startswith("body: not JSON")


def test_auth_and_size_cap(router: RouterProcess) -> None:
    body = payload("G", [alert("f1")])
    assert router.post(body, headers={}).status_code == 401
    assert router.post(body, headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert router.post(body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert httpx.get(f"{router.base}/v1/notifications").status_code == 401
    big = payload("G", [alert(f"f{i}", padding="x" * 1000) for i in range(100)])  # ~130 KB > 64 KiB
    r = router.post(big)
    assert r.status_code == 413 and "ATLAS_ROUTER_MAX_BODY_BYTES" in r.json()["error"]
    assert router.notifications() == []


@BOTH
def test_a_notification_is_delivered_once_per_copy_signed_and_audited(
    router: RouterProcess, hook: HttpReceiver
) -> None:
    body = payload("Disk", [alert("f1"), alert("f2", severity="critical")])
    first = router.post(body)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert first.json()["deliveries"] == {"webhook": "pending"}
    # The HA peer's copy (alert order differs) and Alertmanager's retry: accepted, not delivered again.
    again = router.post({**body, "alerts": list(reversed(body["alerts"]))})
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True, "deliveries": {}}
    wait_for(lambda: len(hook.requests) == 1, 30, "the webhook delivery")
    wait_for(lambda: router.notifications()[0]["deliveries"][0]["state"] == "sent", 30, "sent recorded")
    got = hook.requests[0]
    sent = json.loads(got.body)
    assert {a["fingerprint"] for a in sent["alerts"]} == {"f1", "f2"} and sent["status"] == "firing"
    assert got.headers["authorization"] == "Bearer wh-bearer-123"
    assert got.headers["x-team"] == "storage"
    expected = "sha256=" + hmac.new(HMAC_KEY.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-atlas-signature"] == expected
    assert got.headers["idempotency-key"].endswith(".webhook")
    assert router.metric("atlas_router_dedupe_hits_total") == 1
    assert router.metric("atlas_router_notifications_received_total", status="firing") == 2
    assert router.metric("atlas_router_deliveries_total", channel="webhook", outcome="sent") == 1
    assert router.metric("atlas_router_delivery_seconds_count", channel="webhook") == 1
    assert router.metric("atlas_router_outbox_depth", channel="webhook") == 0
    # Resolved: a new notification (status is part of the key), filterable in the audit trail.
    resolved = payload("Disk", [alert("f1", status="resolved"), alert("f2", status="resolved")])
    assert router.post(resolved).json()["duplicate"] is False
    wait_for(lambda: len(hook.requests) == 2, 30, "the resolved delivery")
    assert [n["status"] for n in router.notifications(status="resolved")] == ["resolved"]
    assert len(router.notifications(channel="webhook")) == 2
    assert router.notifications(channel="email") == []
    health = httpx.get(f"{router.base}/health").json()
    assert health["status"] == "healthy" and health["channels"] == ["webhook"]


def test_a_notification_that_cannot_be_stored_gets_503_and_is_not_lost(
    tmp_path: Path, hook: HttpReceiver
) -> None:
    """The outbox is locked by another writer (a real SQLite lock): the router answers 503 so
    Alertmanager retries, and the retry after the lock is gone is stored and delivered."""
    proc = RouterProcess(tmp_path, config_dir(tmp_path, webhook_url=hook.url), ATLAS_DB_BUSY_TIMEOUT_MS="100")
    proc.start()
    try:
        blocker = sqlite3.connect(proc.data / "alert-router.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        body = payload("Locked", [alert("f1")])
        r = proc.post(body)
        assert r.status_code == 503 and "not stored" in r.json()["error"], r.text
        blocker.execute("ROLLBACK")
        blocker.close()
        assert proc.post(body).status_code == 200
        wait_for(lambda: len(hook.requests) == 1, 30, "the delivery after the lock")
    finally:
        proc.stop()


def _senders(parent: psutil.Process) -> list[psutil.Process]:
    out = []
    for child in parent.children():
        try:
            if "atlas.alerting.router.senderproc" in child.cmdline() and child.status() != "zombie":
                out.append(child)
        except psutil.Error:
            continue  # exited (or a zombie about to be reaped)
    return out


def test_senders_run_in_their_own_process_restarted_when_it_dies_and_stopped_with_the_router(
    router: RouterProcess, hook: HttpReceiver
) -> None:
    """Intake and delivery do not share one GIL (bench/router.py); the child is supervised, its
    counts reach the router's /metrics, and SIGTERM stops both (exit 0)."""
    assert router.proc is not None
    parent = psutil.Process(router.proc.pid)
    wait_for(lambda: len(_senders(parent)) == 1, 30, "the sender process")
    first = _senders(parent)[0]
    assert router.post(payload("P1", [alert("s1")])).status_code == 200
    wait_for(lambda: len(hook.ok()) == 1, 30, "the first delivery")
    # Counted before the kill: a count the child had not yet reported dies with it (CI, once).
    sent = {"channel": "webhook", "outcome": "sent"}
    wait_for(lambda: router.metric("atlas_router_deliveries_total", **sent) == 1, 30, "the first counted")
    first.kill()
    wait_for(lambda: [p.pid for p in _senders(parent)] not in ([], [first.pid]), 30, "a new sender process")
    # Ready: its senders run (an interpreter's start-up and imports, slow on a loaded CI machine:
    # a 30 s bound for start-up plus delivery together was passed once in CI).
    wait_for(router.is_ready, 60, "the new sender process to say ready")
    assert router.post(payload("P2", [alert("s2")])).status_code == 200
    wait_for(lambda: len(hook.ok()) == 2, 30, "the delivery after the restart")
    wait_for(lambda: router.metric("atlas_router_deliveries_total", **sent) == 2, 30, "both counted")
    second = _senders(parent)[0]
    router.proc.terminate()
    assert router.proc.wait(30) == 0
    wait_for(lambda: not second.is_running() or second.status() == "zombie", 30, "the senders to stop")
    assert len({json.loads(r.body)["groupKey"] for r in hook.ok()}) == 2
