"""`atlas-ops service ...` under the local supervisor, for real: every service started as its own
detached process, inspected, one of them killed and seen failed with its log, all stopped."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.conftest import atlas_env
from tests.helpers.net import free_port
from tests.helpers.opscli import atlas_ops, ok_json


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return atlas_env(
        tmp_path / "data",
        ATLAS_API_PORT=str(free_port()),
        ATLAS_EXPORTER_PORT=str(free_port()),
        ATLAS_ROUTER_PORT=str(free_port()),
        ATLAS_WORKERS="1",
        ATLAS_SERVICE_BACKEND="local",
    )


def states(env: dict[str, str]) -> dict[str, dict[str, object]]:
    done = atlas_ops(env, "service", "status", "--all", "--format", "json")
    return {s["name"]: s for s in json.loads(done.stdout)["services"]}


def test_start_status_kill_and_stop_every_service(env: dict[str, str], tmp_path: Path) -> None:
    try:
        # Inside the try: a start that fails half-way still stops what it started.
        started = ok_json(env, "service", "start", "all")
        by_name = {s["name"]: s for s in started["services"]}
        assert set(by_name) == {"api", "core", "services", "monitoring", "exporter", "alert-router"}
        for name in ("api", "core", "services", "monitoring", "exporter", "alert-router"):
            assert by_name[name]["state"] == "running", by_name[name]
            assert psutil.pid_exists(int(by_name[name]["pid"]))

        status = states(env)
        assert status["api"]["health"] in ("healthy", "degraded")
        assert int(str(status["core"]["rss_bytes"])) > 0
        assert float(str(status["exporter"]["uptime_seconds"])) >= 0

        # Starting again is a no-op that says so.
        again = ok_json(env, "service", "start", "api")
        assert again["services"][0]["message"] == "already running"

        os.kill(int(str(by_name["core"]["pid"])), signal.SIGKILL)
        done = atlas_ops(env, "service", "status", "--all", "--format", "json")
        assert done.returncode == 1  # a failed service makes status exit 1
        core = {s["name"]: s for s in json.loads(done.stdout)["services"]}["core"]
        assert core["state"] == "failed"
        assert any('"atlas-core"' in line or "engine" in line for line in core["log_tail"]), core["log_tail"]

        table = atlas_ops(env, "service", "status", "core")
        assert "failed" in table.stdout and "last log lines" in table.stdout

        restarted = ok_json(env, "service", "restart", "core")
        assert restarted["services"][0]["state"] == "running"
    finally:
        stopped = ok_json(env, "service", "stop", "all")
    pids = [int(str(s["pid"])) for s in started["services"] if s["pid"]]
    assert {s["state"] for s in stopped["services"]} == {"stopped"}
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    # A killed process's stale pid file was cleaned up, so the exporter stops looking for it.
    assert not list((tmp_path / "data" / "run").glob("*.pid"))


def test_stop_sends_sigkill_after_the_grace_period(env: dict[str, str], tmp_path: Path) -> None:
    from atlas.config.loader import load_settings
    from atlas.ops.services.local import LocalSupervisor

    settings = load_settings(env)
    ok_json(env, "database", "migrate")  # `atlas services` polls a database; it creates none
    sup = LocalSupervisor(settings, env=env, stop_grace=0.5)
    st = sup.start("services")
    assert st.state == "running" and st.pid
    proc = psutil.Process(st.pid)
    proc.suspend()  # a stopped process cannot act on SIGTERM: only SIGKILL ends it
    stopped = sup.stop("services")
    assert stopped.state == "stopped"
    assert not psutil.pid_exists(st.pid) or psutil.Process(st.pid).status() == "zombie"
    log = (tmp_path / "data" / "logs" / "services.log").read_text()
    assert "grace period over; SIGKILL" in log


def test_a_service_that_cannot_start_is_reported_with_its_log(env: dict[str, str]) -> None:
    from atlas.config.loader import load_settings
    from atlas.ops.services import ServiceError
    from atlas.ops.services.local import LocalSupervisor

    # The process gets a bad setting; it exits 2 naming it, and start says so with the log's tail.
    sup = LocalSupervisor(load_settings(env), env=env | {"ATLAS_API_PORT": "not-a-port"})
    with pytest.raises(ServiceError, match=r"exited with code 2(.|\n)*ATLAS_API_PORT"):
        sup.start("api")
    failed = sup.status("api")
    assert failed.state == "failed" and any("ATLAS_API_PORT" in line for line in failed.log_tail)
