"""Faults against a real `atlas alert-router`: the SMTP server down during a burst, the router
SIGKILLed with deliveries pending and in flight. Nothing accepted is lost; nothing recorded as
sent is sent again.

The issue's SMTP outage is 30 s; here it lasts as long as it takes every one of the 100
deliveries to fail at least once (a few seconds with the test's 0.05-0.5 s backoff), which
exercises the same path (failure, backoff, retry, recovery) without a 30 s wait in the suite.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.receivers import HttpReceiver, SmtpSink
from tests.helpers.router import RouterProcess, alert, config_dir, payload, postgres_env

pytestmark = pytest.mark.slow


def test_smtp_down_during_a_burst_of_100_then_all_delivered_once(tmp_path: Path) -> None:
    sink = SmtpSink(free_port())
    sink.start()
    router = RouterProcess(tmp_path, config_dir(tmp_path, smtp_port=sink.port))
    router.start()
    try:
        sink.stop()  # the outage starts
        for i in range(100):
            r = router.post(payload(f"Burst{i}", [alert(f"b{i}")]))
            assert r.status_code == 200, r.text
        wait_for(
            lambda: router.metric("atlas_router_retries_total", channel="email") >= 100,
            120,
            "every delivery to have failed at least once",
        )
        assert router.metric("atlas_router_outbox_depth", channel="email") == 100
        assert router.metric("atlas_router_outbox_oldest_pending_seconds", channel="email") > 0
        sink.start()  # the outage ends
        wait_for(lambda: len(sink.messages) >= 100, 120, "all 100 emails")
        wait_for(
            lambda: router.metric("atlas_router_outbox_depth", channel="email") == 0, 60, "an empty outbox"
        )
        assert router.metric("atlas_router_deliveries_total", channel="email", outcome="sent") == 100
        ids = Counter(str(m["Message-Id"]) for m in sink.messages)
        assert len(sink.messages) == 100 and len(ids) == 100, ids.most_common(3)
        assert len({str(m["X-Atlas-Group-Key"]) for m in sink.messages}) == 100
    finally:
        router.stop()
        sink.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_with_50_pending_then_all_delivered_after_restart_none_twice(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """On PostgreSQL the restarted router releases its own leases (same host and data dir)."""
    env = postgres_env(request.getfixturevalue("postgres_url")) if backend == "postgres" else {}
    hook = HttpReceiver()
    cfg = config_dir(tmp_path, webhook_url=hook.url)
    router = RouterProcess(tmp_path, cfg, **env)
    router.start()
    try:
        for i in range(10):  # delivered before the crash: must not be sent again after it
            assert router.post(payload(f"Before{i}", [alert(f"a{i}")])).status_code == 200
        wait_for(lambda: len(hook.ok()) == 10, 60, "the first 10 deliveries")
        wait_for(
            lambda: router.metric("atlas_router_deliveries_total", channel="webhook", outcome="sent") == 10,
            30,
            "the first 10 recorded as sent",
        )
        # The receiver fails: four requests hang (in flight when the router dies), the rest get 500.
        hook.default = 500
        hook.script = ["hang"] * 4
        for i in range(50):
            assert router.post(payload(f"Pending{i}", [alert(f"p{i}")])).status_code == 200
        wait_for(lambda: len(hook.requests) >= 10 + 50, 60, "every pending delivery to be tried")
        assert router.metric("atlas_router_outbox_depth", channel="webhook") == 50
        router.kill()
        hook.default = 200
        router.start()  # same data dir: the outbox file is all it has
        wait_for(lambda: len(hook.ok()) >= 60, 120, "all 60 deliveries after the restart")
        wait_for(
            lambda: router.metric("atlas_router_outbox_depth", channel="webhook") == 0, 60, "an empty outbox"
        )
        keys = Counter(r.headers["idempotency-key"] for r in hook.ok())
        assert len(keys) == 60 and max(keys.values()) == 1, keys.most_common(3)
        groups = {json.loads(r.body)["groupKey"] for r in hook.ok()}
        assert len(groups) == 60
    finally:
        router.stop()
        hook.close()
