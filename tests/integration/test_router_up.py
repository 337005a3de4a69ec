"""`atlas up` runs the alert router beside the API and the engine."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import ok_json
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import AUTH, alert, config_dir, payload


def test_atlas_up_serves_the_router_and_delivers(tmp_path: Path) -> None:
    hook = HttpReceiver()
    router_port, api_port = free_port(), free_port()
    env = atlas_env(
        tmp_path / "data",
        ATLAS_CONFIG_DIR=str(config_dir(tmp_path, webhook_url=hook.url)),
        ATLAS_ENVIRONMENT="development",
        ATLAS_ROUTER_PORT=str(router_port),
        ATLAS_API_PORT=str(api_port),
        ATLAS_WORKERS="1",
        ATLAS_SERVICE_BACKEND="local",
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "atlas", "up"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{router_port}"

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{base}/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 60, "atlas up's alert router")
        r = httpx.post(f"{base}/v1/alertmanager", json=payload("Up", [alert("u1")]), headers=AUTH)
        assert r.status_code == 200, r.text
        wait_for(lambda: len(hook.ok()) == 1, 30, "the webhook delivery")
        assert "atlas_router_deliveries_total" in httpx.get(f"{base}/metrics").text
        # The local supervisor did not start them, but it tells what `atlas up` is serving.
        services = {s["name"]: s for s in ok_json(env, "service", "status", "--all")["services"]}
        for name in ("api", "core", "alert-router"):
            assert (services[name]["state"], services[name]["pid"]) == ("running", proc.pid), services[name]
            assert "inside `atlas up`" in str(services[name]["message"])
        # ATLAS_EXPORTER_PORT=0 leaves the exporter out of `atlas up`; the rest it never runs.
        assert {services[n]["state"] for n in ("exporter", "services", "monitoring")} == {"stopped"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        hook.close()
    assert code == 0, log_path.read_text()
    assert (tmp_path / "data" / "alert-router.db").exists()
