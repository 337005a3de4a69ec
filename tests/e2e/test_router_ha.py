"""Two real Alertmanagers (Debian's prometheus-alertmanager), clustered on loopback ports, with
the compiled alertmanager.yml (the shipped alerting.yaml compiled with `router:` at the test's
router and token file; group timings shortened), both send to a real router: each notification
reaches each channel once.

Both peers get every alert (as Prometheus sends to every Alertmanager). `--cluster.peer-timeout`
is short so the second peer sends right after the first rather than 15 s later: whether it sees
the first's notification log in time or not, the router must deliver once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_program
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.receivers import HttpReceiver, SmtpSink
from tests.helpers.router import TOKEN, RouterProcess, alerting_yaml, compile_into, config_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    """Yields (web URLs of both peers, the router URL they send to); the router starts later."""
    binary = require_program("prometheus-alertmanager", "prometheus-alertmanager")
    router_port = free_port()
    token_file = tmp_path / "router-token"
    token_file.write_text(TOKEN, encoding="utf-8")
    source = alerting_yaml(tmp_path / "alerting.yaml", f"http://127.0.0.1:{router_port}", token_file)
    _, config = compile_into(source, tmp_path)
    web = [free_port(), free_port()]
    mesh = [free_port(), free_port()]
    procs = []
    for i in range(2):
        (tmp_path / f"am{i}").mkdir()
        with (tmp_path / f"am{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.path={tmp_path / f'am{i}'}",
                        f"--web.listen-address=127.0.0.1:{web[i]}",
                        f"--cluster.listen-address=127.0.0.1:{mesh[i]}",
                        f"--cluster.advertise-address=127.0.0.1:{mesh[i]}",
                        f"--cluster.peer=127.0.0.1:{mesh[1 - i]}",
                        "--cluster.peer-timeout=200ms",
                        "--cluster.settle-timeout=2s",
                        "--cluster.gossip-interval=50ms",
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
    urls = [f"http://127.0.0.1:{p}" for p in web]

    def clustered() -> bool:
        try:
            return all(
                len(httpx.get(f"{u}/api/v2/status", timeout=2).json()["cluster"]["peers"]) == 2 for u in urls
            )
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    try:
        wait_for(clustered, 60, "both Alertmanagers to see each other")
        yield urls, f"http://127.0.0.1:{router_port}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def _post_alert(urls: list[str], ends_at: str | None) -> None:
    body = [
        {
            "labels": {"alertname": "AtlasDiskUsage", "severity": "critical", "instance": "host-a:9110"},
            "annotations": {"summary": "Disk 97% full"},
            "startsAt": "2026-01-01T00:00:00Z",
            **({"endsAt": ends_at} if ends_at else {}),
        }
    ]
    for u in urls:  # Prometheus sends every alert to every Alertmanager
        httpx.post(f"{u}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def test_two_clustered_alertmanagers_each_notification_reaches_each_channel_once(
    tmp_path: Path, alertmanagers: tuple[list[str], str]
) -> None:
    urls, router_url = alertmanagers
    hook, slack, sink = HttpReceiver(), HttpReceiver(), SmtpSink(free_port())
    sink.start()
    cfg = config_dir(tmp_path, webhook_url=hook.url, slack_url=slack.url, smtp_port=sink.port)
    router = RouterProcess(tmp_path, cfg)
    router.port = int(router_url.rsplit(":", 1)[1])
    router.env["ATLAS_ROUTER_PORT"] = str(router.port)
    router.start()
    try:
        _post_alert(urls, None)
        wait_for(
            lambda: len(hook.ok()) == 1 and len(slack.ok()) == 1 and len(sink.messages) == 1,
            60,
            "the firing notification on every channel",
        )
        _post_alert(urls, datetime.now(UTC).isoformat().replace("+00:00", "Z"))
        wait_for(
            lambda: len(hook.ok()) >= 2 and len(slack.ok()) >= 2 and len(sink.messages) >= 2,
            60,
            "the resolved notification on every channel",
        )
        firing = router.metric("atlas_router_notifications_received_total", status="firing")
        resolved = router.metric("atlas_router_notifications_received_total", status="resolved")
        # Any copy the second peer sent arrived before the first peer's resolution (group_interval
        # later): by now every channel holds everything it will ever get for this group.
        assert len(hook.ok()) == len(slack.ok()) == len(sink.messages) == 2
        assert [m["Subject"] for m in sink.messages] == [
            # The compiled route groups by every label ("..."): all are group labels.
            "[FIRING:1] AtlasDiskUsage host-a:9110 critical",
            "[RESOLVED] AtlasDiskUsage host-a:9110 critical",
        ]
        dedupe = router.metric("atlas_router_dedupe_hits_total")
        assert dedupe == firing + resolved - 2
        print(
            f"\nHA: router received {firing:g} firing + {resolved:g} resolved copies, {dedupe:g} deduplicated"
        )
    finally:
        router.stop()
        hook.close()
        slack.close()
        sink.stop()
